"""TinyRunData: the synthetic data of bundles' tiny runs (the `tiny_run` fixture and scripts/gpu_check.py)."""

import json

import pytest

from monaiseg.data.tiny_run import TinyRunData


def bundle(root, name, tiny):
    (root / name / "configs").mkdir(parents=True)
    (root / name / "configs" / "tiny.json").write_text(json.dumps(tiny))
    return root / name


def test_generated_once_per_spec_with_overrides(tmp_path):
    spec = {"_target_": "os.makedirs", "mode": 0o755}  # called as makedirs(out, mode=...)
    a = bundle(tmp_path, "a", {"synthetic_dataset": spec, "synthetic_overrides": {"class_names": ["x", "y"]}})
    b = bundle(tmp_path, "b", {"synthetic_dataset": dict(spec)})
    c = bundle(tmp_path, "c", {"synthetic_dataset": {"_target_": "os.makedirs", "mode": 0o700}})
    data = TinyRunData(tmp_path / "data")
    first = data(a)
    assert first == {"dataset_dir": str(tmp_path / "data" / "a_data_0"), "class_names": ["x", "y"]}
    assert (tmp_path / "data" / "a_data_0").is_dir()
    assert data(b) == {"dataset_dir": first["dataset_dir"]}  # the same generator and arguments: not made again
    assert data(str(c)) == {"dataset_dir": str(tmp_path / "data" / "c_data_1")}
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["a_data_0", "c_data_1"]


def test_a_bundle_without_generator_is_named(tmp_path):
    with pytest.raises(ValueError, match="nogen: configs/tiny.json has no `synthetic_dataset` generator"):
        TinyRunData(tmp_path / "data")(bundle(tmp_path, "nogen", {"max_epochs": 1}))
