"""Bundle JSON names public components only: every `monaiseg...` reference in a config of bundles/ (the template
included) reads `monaiseg.<subpackage>.<Name>` with Name in that subpackage's `__all__` (or a public name of a
top-level module such as `monaiseg.prompts`), so moving code between a subpackage's modules breaks no bundle.
`__all__` is read from the source (ast), nothing of monaiseg is imported."""

from __future__ import annotations

import ast
import json
import re
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "monaiseg"
REFERENCE = re.compile(r"(?<![\w.])monaiseg(?:\.\w+)*")
CONFIGS = sorted(p for p in (REPO / "bundles").glob("*/configs/**/*.json") if p.name != "metadata.json")


def _literal_names(node: ast.expr, assigned: dict[str, ast.expr]) -> list[str]:
    """Names of an `__all__` value: a list / tuple of strings, or sorted(...) / list(...) of a dict or list
    literal assigned in the same module (monaiseg.data's lazy table)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("sorted", "list"):
        return _literal_names(node.args[0], assigned)
    if isinstance(node, ast.Name) and node.id in assigned:
        return _literal_names(assigned[node.id], assigned)
    if isinstance(node, ast.Dict):
        return [k.value for k in node.keys if isinstance(k, ast.Constant)]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [e.value for e in node.elts if isinstance(e, ast.Constant)]
    raise AssertionError(f"cannot read __all__ from {ast.dump(node)[:200]}")


@cache
def public_names(part: str) -> frozenset[str] | None:
    """`__all__` of monaiseg/<part>/__init__.py (None: it declares none), or the public top-level names of
    monaiseg/<part>.py (its `__all__` when it has one); empty for no such part."""
    path = PACKAGE / part / "__init__.py" if (PACKAGE / part).is_dir() else PACKAGE / f"{part}.py"
    if not path.is_file():
        return frozenset()
    tree = ast.parse(path.read_text())
    assigned: dict[str, ast.expr] = {}
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        for target in targets:
            if isinstance(target, ast.Name) and getattr(node, "value", None) is not None:
                assigned[target.id] = node.value
    if "__all__" in assigned:
        return frozenset(_literal_names(assigned["__all__"], assigned))
    if path.name == "__init__.py":
        return None
    defined = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))} | set(assigned)
    return frozenset(n for n in defined if not n.startswith("_"))


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def problems(reference: str) -> str | None:
    """Why `reference` is not a public name (None when it is)."""
    parts = reference.split(".")
    if parts == ["monaiseg"]:
        return None
    if len(parts) != 3:
        return "not monaiseg.<subpackage>.<Name>"
    names = public_names(parts[1])
    if names is None:
        return f"monaiseg/{parts[1]}/__init__.py declares no __all__"
    if parts[2] not in names:
        return f"{parts[2]} is not in monaiseg.{parts[1]}.__all__"
    return None


def bad_references(path: Path) -> list[str]:
    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path
    found = []
    for text in strings(json.loads(path.read_text())):
        for reference in REFERENCE.findall(text):
            why = problems(reference)
            if why:
                found.append(f"{where}: {reference} ({why})")
    return found


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO / "bundles")))
def test_bundle_config_names_public_components_only(path):
    bad = bad_references(path)
    assert not bad, "\n".join(bad)


def test_every_subpackage_declares_all():
    missing = [p.parent.name for p in sorted(PACKAGE.glob("*/__init__.py")) if public_names(p.parent.name) is None]
    assert not missing, f"subpackages without __all__: {missing}"


def test_all_names_exist_in_the_subpackage_source():
    """Every name in a subpackage's `__all__` is imported or defined in its `__init__.py` (or, for
    monaiseg.data's lazy table, defined in the module it points to)."""
    absent = []
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        names = public_names(init.parent.name) or frozenset()
        text = init.read_text()
        absent += [f"monaiseg.{init.parent.name}.{n}" for n in sorted(names) if not re.search(rf"\b{n}\b", text)]
    assert not absent, absent
    lazy = ast.literal_eval(
        re.search(r"_SUBMODULES = (\{.*?\n\})", (PACKAGE / "data" / "__init__.py").read_text(), re.S)[1]
    )
    for name, module in lazy.items():
        assert re.search(rf"^(def |class )?{name}\b", (PACKAGE / "data" / f"{module}.py").read_text(), re.M), name


def test_the_checker_refuses_module_paths(tmp_path):
    config = tmp_path / "train.json"
    config.write_text(
        json.dumps(
            {
                "a": {"_target_": "monaiseg.inferers.box_carry.BoxPromptInferer"},
                "b": "$monaiseg.networks.tensorrt.trt_network(@net)",
                "c": ["$import monaiseg.data.synapse", "$monaiseg.handlers.NotAHandler()"],
                "ok": "$monaiseg.utils.as_bool(@x) and monaiseg.prompts.prompted_items",
            }
        )
    )
    bad = [b.split(": ", 1)[1] for b in bad_references(config)]
    assert [b.split(" ")[0] for b in bad] == [
        "monaiseg.inferers.box_carry.BoxPromptInferer",
        "monaiseg.networks.tensorrt.trt_network",
        "monaiseg.data.synapse",
        "monaiseg.handlers.NotAHandler",
    ]
