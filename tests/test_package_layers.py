"""The package's architecture rules, checked on its source: imports run downward through the layers
stated in `monaiseg/__init__.py` and the README, and no private helper is imported across modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "monaiseg"
LAYERS = [
    ("utils",),
    ("prompts", "visualize"),
    ("data",),
    ("networks",),
    ("losses", "metrics"),
    ("transforms",),
    ("inferers",),
    ("engines",),
    ("handlers",),
    ("label",),
    ("cli",),
]
LAYER_OF = {name: level for level, names in enumerate(LAYERS) for name in names}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _part(path: Path) -> str:
    """The top-level part of monaiseg a file belongs to ('data', 'prompts', ...)."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(absolute monaiseg module, imported names, line) for every import of monaiseg in `path`."""
    tree = ast.parse(path.read_text())
    package = ["monaiseg", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.startswith("monaiseg"):
                found.append((module, [a.name for a in node.names], node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("monaiseg")]
    return found


def test_every_part_has_a_layer():
    parts = {_part(p) for p in _modules()} - {"__init__"}
    assert parts <= set(LAYER_OF), f"add {sorted(parts - set(LAYER_OF))} to LAYERS (and the README's package map)"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_upward_import(path):
    part = _part(path)
    if part == "__init__":
        return
    upward = []
    for module, _, line in _imports(path):
        target = module.split(".")[1] if module.count(".") else None
        if target and LAYER_OF[target] > LAYER_OF[part]:
            upward.append(f"line {line}: {module} ({target} is above {part})")
    assert not upward, "\n".join(upward)


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_private_name_imported_across_modules(path):
    private = [
        f"line {line}: {name} from {module}"
        for module, names, line in _imports(path)
        for name in names
        if name.startswith("_")
    ]
    assert not private, "\n".join(private)


def test_layer_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: a data module importing an engine is reported."""
    fake = PACKAGE / "data" / "_upward_probe.py"
    monkeypatch.setattr(
        Path,
        "read_text",
        lambda self, *a, **k: (
            "from monaiseg.engines import InteractiveIteration\n" if self == fake else Path.read_bytes(self).decode()
        ),
    )
    with pytest.raises(AssertionError, match="engines is above data"):
        test_no_upward_import(fake)
