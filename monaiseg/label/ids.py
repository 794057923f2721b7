"""Names that requests carry (image ids, label tags, session ids) are names, never paths.

`check_name(value, field)` is the one rule: a non-empty string of at most `MAX_NAME` characters
with no path separator (`/`, `\\`), no `..`, no NUL or other control character, no `%` (so no
percent- or double-encoded form survives a second decoding), not starting with `.` or `~`, and no
`:` (no drive or URL scheme). Anything else is an HTTP 400 naming the field and the problem.
A DICOM SeriesInstanceUID (digits and single dots, at most 64 characters) is a name.
"""

from __future__ import annotations

import unicodedata

from fastapi import HTTPException

MAX_NAME = 128


def name_problem(value: object) -> str | None:
    """Why `value` is not a name (None when it is one)."""
    if not isinstance(value, str) or not value:
        return "is empty" if value in ("", None) else f"is a {type(value).__name__}, not a name"
    if len(value) > MAX_NAME:
        return f"is {len(value)} characters long (at most {MAX_NAME})"
    for bad, what in (("/", "a '/'"), ("\\", "a '\\'"), ("..", "'..'"), ("%", "a '%' (an encoded form)")):
        if bad in value:
            return f"contains {what}: an id is a name, not a path"
    if any(unicodedata.category(c) == "Cc" for c in value):
        return "contains a control character (NUL, newline, ...)"
    if value[0] in ".~":
        return f"starts with {value[0]!r}"
    if ":" in value:
        return "contains a ':' (a drive or URL scheme): an id is a name, not a path"
    return None


def check_name(value: object, field: str) -> str:
    """`value` when it is a name (module docstring), else HTTPException 400 naming `field`."""
    problem = name_problem(value)
    if problem is not None:
        shown = repr(value) if not isinstance(value, str) or len(value) <= 80 else repr(value[:80] + "...")
        raise HTTPException(400, detail=f"{field} {shown} {problem}")
    return value  # type: ignore[return-value]
