"""The repository stands alone: what a user's checkout holds is all the docs, code and metadata refer to.

- No git-tracked file outside tests/ mentions files that are not in the repository (`METHODS.md`,
  `DESIGN.md` in any case, unless the name as written is the path of a file of the repository such
  as docs/methods.md; `../shared`) or uses "seed 00N" wording; methods are described in
  docs/methods.md and papers are cited by authors, title and venue. (Tests may name `../shared`: the
  ones that use the real sample data skip when it is absent.)
- Every relative link in README.md, docs/*.md and bundles/*/docs/README.md points to an existing file
  or folder, and a link to a heading of a Markdown file (`file.md#anchor`, `#anchor`) to an existing
  heading (GitHub's anchor rules).
- docs/methods.md names every bundle."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import BUNDLES, REPO

FORBIDDEN = re.compile(r"\.\./shared|/work/shared|seed 00", re.IGNORECASE)
NOTE_SECTION = re.compile(r"\b(?:METHODS|DESIGN)\b\s*(?:§|digest|section\s+\d)")
NOTE_FILE = re.compile(r"[\w./-]*\b(?:methods|design)\.md", re.IGNORECASE)
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def tracked_files() -> list[Path]:
    """Git-tracked files of the working tree (those deleted in it left out)."""
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    return [REPO / p for p in listed.decode().split("\0") if p and (REPO / p).is_file()]


def text_of(path: Path) -> str | None:
    """The file as UTF-8 text, or None for a binary file."""
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def in_repository(name: str, mentioned_in: Path) -> bool:
    """Whether `name` as written is the path of a file of the repository, from its root or from the folder
    of the file that mentions it (docs/methods.md is; METHODS.md is not)."""
    for base in (REPO, mentioned_in.parent):
        candidate = (base / name).resolve()
        if candidate.is_relative_to(REPO.resolve()) and candidate.is_file():
            return True
    return False


def test_no_reference_outside_the_repository():
    hits = []
    for path in tracked_files():
        rel = path.relative_to(REPO)
        if rel.parts[0] == "tests":
            continue
        text = text_of(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            outside_file = any(not in_repository(m.group(0), path) for m in NOTE_FILE.finditer(line))
            if FORBIDDEN.search(line) or NOTE_SECTION.search(line) or outside_file:
                hits.append(f"{rel}:{number}: {line.strip()[:150]}")
    assert not hits, (
        "files outside the repository or 'seed 00N' wording (cite the paper or link docs/methods.md instead):\n"
        + "\n".join(hits)
    )


def markdown_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code spans removed."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, re.sub(r"`+[^`]*`+", "", line)))
    return lines


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a heading: links reduced to their text, lower case, punctuation other than
    hyphens and underscores removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Anchors of every heading of a Markdown file (a repeated heading gets -1, -2, ...)."""
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            anchor = github_anchor(match.group(2))
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def documentation_files() -> list[Path]:
    files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(REPO.glob("bundles/*/docs/README.md"))]
    return [f for f in files if f.is_file()]


def broken_links(doc: Path, root: Path = REPO) -> list[str]:
    broken = []
    for number, line in markdown_lines(doc.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if SCHEME.match(target):
                continue  # web address
            path_part, _, anchor = target.partition("#")
            where = f"{doc.relative_to(root)}:{number}: {target}"
            dest = (doc.parent / path_part).resolve() if path_part else doc
            if not dest.exists():
                broken.append(f"{where} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{where} (no heading with anchor #{anchor})")
    return broken


@pytest.mark.parametrize("doc", documentation_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(doc):
    broken = broken_links(doc)
    assert not broken, "broken relative links:\n" + "\n".join(broken)


def test_link_checker_finds_broken_links(tmp_path):
    """The checker itself: a missing file, a missing heading and a link inside code are told apart."""
    (tmp_path / "other.md").write_text("# Other\n\n## A section: (with) punctuation\n")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "[ok](other.md#a-section-with-punctuation) [web](https://example.org/x.md) [self](#title)\n"
        "# Title\n[gone](missing.md) [bad anchor](other.md#nope) `[code](missing2.md)`\n"
        "```\n[fenced](missing3.md)\n```\n"
    )
    broken = broken_links(doc, root=tmp_path)
    assert [b.split(": ", 1)[1] for b in broken] == [
        "missing.md (no such file)",
        "other.md#nope (no heading with anchor #nope)",
    ]


def test_methods_document_names_every_bundle():
    methods = (REPO / "docs" / "methods.md").read_text(encoding="utf-8")
    missing = [b.name for b in BUNDLES if f"`{b.name}`" not in methods and f"bundles/{b.name}/" not in methods]
    assert not missing, f"docs/methods.md has no section naming the bundle(s) {missing}"


def test_methods_anchors_mentioned_anywhere_exist():
    """`docs/methods.md#<anchor>` in docstrings, comments and docs names a heading of docs/methods.md."""
    known = anchors(REPO / "docs" / "methods.md")
    mention = re.compile(r"docs/methods\.md#([\w-]+)")
    missing = []
    for path in tracked_files():
        text = text_of(path)
        for number, line in enumerate((text or "").splitlines(), 1):
            missing += [f"{path.relative_to(REPO)}:{number}: #{a}" for a in mention.findall(line) if a not in known]
    assert not missing, "docs/methods.md has no heading for:\n" + "\n".join(missing)
