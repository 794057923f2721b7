"""The package's architecture rules, checked on its source: imports run downward through the layers
stated in `monaiseg/__init__.py` and docs/package_map.md, no private helper is imported across modules, and
third-party private code (sam2's above all) is used only in the one patch module."""

from __future__ import annotations

import ast
import importlib.util
from functools import cache
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
    assert parts <= set(LAYER_OF), f"add {sorted(parts - set(LAYER_OF))} to LAYERS (and docs/package_map.md)"


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


PATCH_MODULE = Path("networks/sam2_private.py")  # our one module of sam2 private code (its docstring)
THIRD_PARTY_PRIVATE = {  # other third-party private names used elsewhere (an upgrade may break them), and why
    (Path("transforms/intensity.py"), "_normalize"): "MONAI NormalizeIntensity's per-channel hook, overridden",
    (Path("transforms/cells.py"), "_do_transform"): "MONAI RandomizableTransform's draw, read by our subclasses",
    (Path("handlers/resume.py"), "_rand"): "numpy's global RandomState (np.random.mtrand._rand), saved and restored",
    (Path("label/dicomweb.py"), "_client"): "MONAI Label DICOMWebDatastore's DICOMweb client (no public handle)",
    (Path("label/dicomweb.py"), "_datastore"): "MONAI Label DICOMWebDatastore's local cache datastore",
    (Path("label/dicomweb.py"), "_fetch_by_frame"): "MONAI Label DICOMWebDatastore's download setting",
    (Path("label/dicomweb.py"), "_convert_to_nifti"): "MONAI Label DICOMWebDatastore's SEG-to-NIfTI setting",
    (Path("label/dicomweb.py"), "_dicom_info"): "MONAI Label DICOMWebDatastore's label info of a series",
    (Path("handlers/case_failures.py"), "_iteration"): "MONAI evaluator's iteration (iteration_update's default)",
}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _defined_names(tree: ast.AST) -> set[str]:
    """Names a source defines: functions, classes, assigned names and attributes, import aliases."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.alias):
            names.add(node.asname or node.name.split(".")[0])
    return names


@cache
def _tree(path: Path) -> ast.AST:
    return ast.parse(path.read_text())


@cache
def _sam2_private_names() -> frozenset[str]:
    """The private names sam2's own source defines (methods, functions, attributes)."""
    spec = importlib.util.find_spec("sam2")
    assert spec is not None and spec.origin is not None, "sam2 is not installed"
    root = Path(spec.origin).parent
    return frozenset(n for f in root.rglob("*.py") for n in _defined_names(ast.parse(f.read_text())) if _private(n))


@cache
def _our_private_names() -> frozenset[str]:
    """The private names monaiseg defines itself, outside the patch module (which defines sam2's)."""
    names = set()
    for path in _modules():
        if path.relative_to(PACKAGE) != PATCH_MODULE:
            names |= {n for n in _defined_names(_tree(path)) if _private(n)}
    return frozenset(names)


def _third_party_private_uses(rel: Path, tree: ast.AST) -> list[str]:
    """sam2 private methods the module `rel` overrides or sam2 names it imports, and private names it
    reads (`x._name`) that monaiseg does not define itself: sam2's, or others' (MONAI's, ...) unless allowed."""
    if rel == PATCH_MODULE:
        return []
    sam2, ours, found = _sam2_private_names(), _our_private_names(), []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in sam2:
            found.append(f"line {node.lineno}: defines sam2's {node.name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in ours:
            if node.attr in sam2:
                found.append(f"line {node.lineno}: sam2's {node.attr}")
            elif (rel, node.attr) not in THIRD_PARTY_PRIVATE:
                found.append(f"line {node.lineno}: third-party private {node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sam2":
            names = [a.name for a in node.names] + (node.module or "").split(".")
            found += [f"line {node.lineno}: imports sam2's {name}" for name in names if _private(name)]
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_third_party_private_code_only_in_the_patch_module(path):
    found = _third_party_private_uses(path.relative_to(PACKAGE), _tree(path))
    assert not found, f"move to monaiseg/{PATCH_MODULE} (sam2) or give a public name there:\n" + "\n".join(found)


def test_private_code_check_catches_sam2_and_other_private_calls():
    """The check itself can fail: a session calling sam2's tracking step, overriding sam2's feature cache,
    importing sam2's extension and reading MONAI's private state is reported on each line."""
    source = (
        "from sam2 import _C\n"
        "def _get_image_feature(self, state, frame, batch):\n"
        "    return self.model._run_single_frame_inference(state) or self.engine._iteration\n"
    )
    found = _third_party_private_uses(Path("inferers/_probe.py"), ast.parse(source))
    assert set(found) == {
        "line 1: imports sam2's _C",
        "line 2: defines sam2's _get_image_feature",
        "line 3: sam2's _run_single_frame_inference",
        "line 3: third-party private _iteration",
    }, found


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
