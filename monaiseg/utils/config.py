"""Values of bundle configs as the command line gives them: booleans and nulls may arrive as strings."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TRUE_WORDS = ("true", "1")
FALSE_WORDS = ("false", "0")


def as_bool(value: bool | int | str, name: str = "value") -> bool:
    """A config switch as a real bool: a bool, 0/1, or "true"/"false" / "1"/"0" (any case) as
    `monai.bundle run --key value` passes it. ValueError naming `name` for anything else."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise ValueError(f"{name} must be true or false, got {value!r}")


def none_if_null(value: str | Path | None) -> str | Path | None:
    """None for None, "", "none" and "null" (any case: the bundle CLI cannot pass None), else `value`."""
    if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
        return None
    return value


@contextmanager
def silenced(logger_name: str, enabled: bool = True) -> Iterator[None]:
    """Disable the logger `logger_name` inside the block when `enabled`."""
    log = logging.getLogger(logger_name)
    before = log.disabled
    log.disabled = before or enabled
    try:
        yield
    finally:
        log.disabled = before
