"""bundles/_template/ (`monaiseg new-bundle NAME`): a bundle made from it passes the structural checks of the
contract (monaiseg.utils.bundle_contract: files, config keys; metadata schema; JSON format; the configs parse;
verify_net_in_out with tiny.json), and the files every bundle shares are the template's copies."""

from __future__ import annotations

import filecmp
import importlib.util
import json

import pytest
from conftest import BUNDLES, REPO

from monaiseg.utils import bundle_contract

TEMPLATE = REPO / "bundles" / bundle_contract.TEMPLATE

spec = importlib.util.spec_from_file_location("verify_bundles", REPO / "scripts" / "verify_bundles.py")
verify_bundles = importlib.util.module_from_spec(spec)
spec.loader.exec_module(verify_bundles)

STRUCTURAL = ("files", "config_keys", "version_in_changelog", "metadata_schema", "json_format", "verify_net_in_out")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A bundle `my_method` made from the template in a temporary bundles folder."""
    bundles = tmp_path_factory.mktemp("bundles")
    return bundle_contract.new_bundle("my_method", bundles)


def test_template_is_no_bundle():
    assert TEMPLATE.is_dir() and TEMPLATE not in BUNDLES
    assert TEMPLATE not in verify_bundles.discover_bundles()
    assert all(
        b.name == TEMPLATE.name or bundle_contract.is_bundle(b) for b in (REPO / "bundles").iterdir() if b.is_dir()
    )


def test_new_bundle_fills_the_name(made):
    assert made.name == "my_method" and bundle_contract.discover_bundles(made.parent) == [made]
    meta = json.loads((made / "configs" / "metadata.json").read_text())
    assert meta["name"] == "my_method" and meta["version"] in meta["changelog"]
    texts = [p.read_text() for p in made.rglob("*") if p.is_file()]
    assert not [t for t in texts if bundle_contract.PLACEHOLDER in t]
    assert "my_method" in (made / "docs" / "README.md").read_text()


@pytest.mark.parametrize("check", STRUCTURAL)
def test_made_bundle_passes_the_structural_checks(made, check, tmp_path):
    assert verify_bundles.checks()[check](made, tmp_path)


def test_made_bundle_configs_parse(made):
    """Every config of the made bundle, merged as the bundle's commands merge it, parses (references and
    macros resolve; nothing is instantiated)."""
    from monai.bundle import ConfigParser

    configs = made / "configs"
    combinations = [
        ["train.json"],
        ["train.json", "evaluate.json"],
        ["train.json", "multi_gpu_train.json"],
        ["train.json", "evaluate.json", "multi_gpu_evaluate.json"],
        ["inference.json"],
        ["inference.json", "batch_inference.json", "multi_gpu_inference.json"],
        ["inference.json", "inference_trt.json"],
    ]
    for names in combinations:
        parser = ConfigParser()
        parser.read_config([str(configs / n) for n in (*names, "tiny.json")])
        parser.parse()
        assert parser.get("run") or parser.get("evaluator"), names


def test_new_bundle_refuses_bad_names_and_existing_folders(made):
    for name in ("My-Method", "_private", "1st"):
        with pytest.raises(ValueError, match="lower-case"):
            bundle_contract.new_bundle(name, made.parent)
    with pytest.raises(FileExistsError, match="my_method"):
        bundle_contract.new_bundle("my_method", made.parent)


@pytest.mark.parametrize("name", list(bundle_contract.SHARED_FILES))
def test_shared_files_are_the_templates_copies(name):
    """Each bundle stands alone (the model zoo's rule) and keeps its own copy of these files, identical to the
    template's unless the contract lists the bundle with a reason. Fix a difference by copying the template's."""
    exceptions = bundle_contract.SHARED_FILES[name]
    assert (TEMPLATE / name).is_file()
    differ = [
        f"bundles/{b.name}/{name}"
        for b in BUNDLES
        if b.name not in exceptions and not filecmp.cmp(TEMPLATE / name, b / name, shallow=False)
    ]
    assert not differ, f"differ from bundles/_template/{name}: {differ}"
    same = [b for b in exceptions if filecmp.cmp(TEMPLATE / name, REPO / "bundles" / b / name, shallow=False)]
    assert not same, f"{same} keep the template's {name} now: drop them from SHARED_FILES"


def test_cli_new_bundle(tmp_path, capsys):
    from monaiseg.cli import main

    main(["new-bundle", "other_method", "--bundles", str(tmp_path)])
    assert bundle_contract.discover_bundles(tmp_path) == [tmp_path / "other_method"]
    assert str(tmp_path / "other_method") in capsys.readouterr().out
