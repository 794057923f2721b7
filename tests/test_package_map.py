"""The package map (docs/package_map.md: its `monaiseg/` block) matches the tree: every module of every part is
named in its part's entry, and a single lower-case word in parentheses there names a module that exists; the
test files the docs name exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "monaiseg"


def map_entries() -> dict[str, str]:
    """part ('utils', 'prompts.py', ...) -> the text of its entry in the package map."""
    text = (REPO / "docs" / "package_map.md").read_text()
    block = re.search(r"```\nmonaiseg/\n(.*?)```", text, flags=re.S)
    assert block, "docs/package_map.md has no package map (a code block starting with `monaiseg/`)"
    entries: dict[str, str] = {}
    current = None
    for line in block.group(1).splitlines():
        head = re.match(r"^  (\S+?)/?\s+(.*)$", line)
        if head:
            current = head.group(1)
            entries[current] = head.group(2)
        elif not line.startswith(" ") and line.strip():
            current = None  # scripts/, tests/: outside the package
        elif current is not None:
            entries[current] += " " + line.strip()
    return entries


def test_every_part_and_module_is_in_the_map():
    entries = map_entries()
    parts = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    modules = {p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    assert set(entries) == parts | modules, f"map {sorted(entries)} vs tree {sorted(parts | modules)}"
    missing = []
    for part in sorted(parts):
        text = entries[part]
        missing += [
            f"{part}/{m.name}"
            for m in sorted((PACKAGE / part).glob("*.py"))
            if m.name != "__init__.py" and not re.search(rf"\b{m.stem}\b", text)
        ]
    assert not missing, f"modules not named in docs/package_map.md: {missing}"


def test_module_names_in_the_map_exist():
    stale = []
    for part, text in map_entries().items():
        if not (PACKAGE / part).is_dir():
            continue
        for name in re.findall(r"\(([a-z][a-z0-9_]*)\)", text):
            if not (PACKAGE / part / f"{name}.py").is_file():
                stale.append(f"{part}/{name}")
    assert not stale, f"docs/package_map.md names modules that do not exist: {stale}"


def test_test_files_named_in_the_docs_exist():
    docs = [REPO / "README.md", REPO / "CONTRIBUTING.md", *REPO.glob("docs/*.md"), *REPO.glob("bundles/*/docs/*.md")]
    named = {(d.relative_to(REPO), m) for d in docs for m in re.findall(r"\btests/[\w/]+\.py\b", d.read_text())}
    missing = sorted(f"{doc}: {path}" for doc, path in named if not (REPO / path).is_file())
    assert not missing, f"docs name test files that do not exist: {missing}"
