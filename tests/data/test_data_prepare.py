"""Datalists and splits; converters from fake FLARE22, MSD Task06_Lung and LiTS release trees."""

import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO

from monaiseg.data.datalist import split_cases, write_datalist
from monaiseg.data.volume_datasets import FLARE22_LABELS, prepare_flare22, prepare_lits, prepare_msd


def _nifti(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.int16), np.eye(4)), path)


def _all_items(content: dict) -> list[dict]:
    return [item for key, items in content.items() if key != "labels" for item in items]


@pytest.fixture
def flare(tmp_path):
    folder = tmp_path / "FLARE22_LabeledCase50"
    for i in range(1, 11):
        _nifti(folder / "images" / f"FLARE22_Tr_{i:04d}_0000.nii.gz")
        _nifti(folder / "labels" / f"FLARE22_Tr_{i:04d}.nii.gz")
    return tmp_path


@pytest.fixture
def msd(tmp_path):
    task = tmp_path / "Task06_Lung"
    training = [
        {"image": f"./imagesTr/lung_{i:03d}.nii.gz", "label": f"./labelsTr/lung_{i:03d}.nii.gz"}
        for i in (1, 3, 4, 5, 6, 9)
    ]
    test = [f"./imagesTs/lung_{i:03d}.nii.gz" for i in (2, 7, 8)]
    for path in [e["image"] for e in training] + [e["label"] for e in training] + test:
        _nifti(task / path)
        (task / path).with_name("._" + Path(path).name).write_bytes(b"\x00\x05\x16\x07junk")
    meta = {
        "name": "Lung",
        "labels": {"0": "background", "1": "cancer"},
        "numTraining": 6,
        "numTest": 3,
        "training": training,
        "test": test,
    }
    (task / "dataset.json").write_text(json.dumps(meta))
    return tmp_path


@pytest.fixture
def lits(tmp_path):
    for i in range(12):
        batch = tmp_path / ("Training Batch 1" if i < 5 else "Training Batch 2")
        _nifti(batch / f"volume-{i}.nii")
        _nifti(batch / f"segmentation-{i}.nii")
    return tmp_path


# ---------------------------------------------------------------- split_cases / write_datalist
def test_split_cases_counts_disjoint_deterministic():
    items = list(range(20))
    splits = split_cases(items, (0.7, 0.15, 0.15), seed=0)
    assert {k: len(v) for k, v in splits.items()} == {"training": 14, "validation": 3, "testing": 3}
    assert sorted(sum(splits.values(), [])) == items  # each item in exactly one split
    assert all(v == sorted(v) for v in splits.values())  # input order kept inside a split
    assert split_cases(items, (0.7, 0.15, 0.15), seed=0) == splits
    assert split_cases(items, (0.7, 0.15, 0.15), seed=1) != splits


def test_split_cases_named_and_small():
    assert {k: len(v) for k, v in split_cases(list("abc"), {"train": 0.9, "val": 0.1}).items()} == {
        "train": 2,
        "val": 1,
    }
    assert split_cases(["only"], {"training": 0.8, "validation": 0.2}) == {"training": ["only"], "validation": []}
    assert {k: len(v) for k, v in split_cases(list(range(4))).items()} == {"training": 2, "validation": 1, "testing": 1}


@pytest.mark.parametrize(
    "items, fractions, message",
    [
        ([], (1.0,), "no items"),
        ([1, 2], (0.5, 0.4), "sum to 1"),
        ([1, 2], (1.2, -0.2), r"in \[0, 1\]"),
        ([1, 2], (0.25, 0.25, 0.25, 0.25), "at most 3"),
    ],
)
def test_split_cases_errors(items, fractions, message):
    with pytest.raises(ValueError, match=message):
        split_cases(items, fractions)


def test_write_datalist(tmp_path):
    splits = {"training": [{"image": Path("imagesTr/a.nii.gz"), "label": "labelsTr/a.nii.gz"}], "testing": []}
    path = write_datalist(tmp_path / "sub" / "datalist.json", splits, labels={1: "liver"})
    assert path == tmp_path / "sub" / "datalist.json"
    assert json.loads(path.read_text()) == {
        "training": [{"image": "imagesTr/a.nii.gz", "label": "labelsTr/a.nii.gz"}],
        "testing": [],
        "labels": {"1": "liver"},
    }
    with pytest.raises(TypeError):  # not JSON-serialisable: the old file stays, no temp file is left
        write_datalist(path, {"training": [{"image": object()}]})
    assert json.loads(path.read_text())["labels"] == {"1": "liver"}
    assert [p.name for p in path.parent.iterdir()] == ["datalist.json"]


# ---------------------------------------------------------------- FLARE22
def test_flare22_from_parent_and_folder(flare, tmp_path):
    out = prepare_flare22(flare, tmp_path / "datalist.json", seed=0, val_fraction=0.2)
    content = json.loads(out.read_text())
    assert len(content["training"]) == 8 and len(content["validation"]) == 2
    assert content["labels"] == {str(k): v for k, v in FLARE22_LABELS.items()} and len(FLARE22_LABELS) == 13
    for item in _all_items(content):
        case = re.fullmatch(r"FLARE22_LabeledCase50/images/(FLARE22_Tr_\d{4})_0000\.nii\.gz", item["image"])
        assert case and item["label"] == f"FLARE22_LabeledCase50/labels/{case.group(1)}.nii.gz"
    assert all((flare / p).is_file() for item in _all_items(content) for p in item.values())

    inner = json.loads(prepare_flare22(flare / "FLARE22_LabeledCase50", tmp_path / "inner.json").read_text())
    assert [i["image"] for i in inner["training"]] == [
        i["image"].removeprefix("FLARE22_LabeledCase50/") for i in content["training"]
    ]


def test_flare22_seed(flare, tmp_path):
    def validation(seed, name):
        return json.loads(prepare_flare22(flare, tmp_path / name, seed=seed).read_text())["validation"]

    assert validation(0, "a.json") == validation(0, "b.json")
    assert validation(0, "a.json") != validation(1, "c.json")


def test_flare22_errors(flare, tmp_path):
    out = tmp_path / "datalist.json"
    with pytest.raises(FileNotFoundError, match="data root not found.*missing"):
        prepare_flare22(tmp_path / "missing", out)
    label = flare / "FLARE22_LabeledCase50/labels/FLARE22_Tr_0004.nii.gz"
    label.unlink()
    with pytest.raises(ValueError, match=r"image without label: .*FLARE22_Tr_0004_0000\.nii\.gz"):
        prepare_flare22(flare, out)
    _nifti(label)
    (flare / "FLARE22_LabeledCase50/images/FLARE22_Tr_0007_0000.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"label without image: .*labels/FLARE22_Tr_0007\.nii\.gz"):
        prepare_flare22(flare, out)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no cases found"):
        prepare_flare22(tmp_path / "empty", out)
    assert not out.exists()


# ---------------------------------------------------------------- MSD Task06_Lung
def test_msd_lung(msd, tmp_path):
    out = prepare_msd(msd, tmp_path / "datalist.json", seed=0, val_fraction=0.2)
    content = json.loads(out.read_text())
    assert (len(content["training"]), len(content["validation"])) == (5, 1)
    assert content["testing"] == [{"image": f"Task06_Lung/imagesTs/lung_{i:03d}.nii.gz"} for i in (2, 7, 8)]
    assert content["labels"] == {"1": "cancer"}
    labelled = content["training"] + content["validation"]
    assert sorted(i["image"] for i in labelled) == [
        f"Task06_Lung/imagesTr/lung_{i:03d}.nii.gz" for i in (1, 3, 4, 5, 6, 9)
    ]
    assert all(i["label"] == i["image"].replace("imagesTr", "labelsTr") for i in labelled)
    assert "._" not in out.read_text()
    assert all((msd / p).is_file() for item in _all_items(content) for p in item.values())

    inner = json.loads(prepare_msd(msd / "Task06_Lung", tmp_path / "inner.json").read_text())
    assert inner["testing"][0] == {"image": "imagesTs/lung_002.nii.gz"}


def test_msd_errors(msd, tmp_path):
    out = tmp_path / "datalist.json"
    with pytest.raises(FileNotFoundError, match="Task06_Lung/dataset.json not found"):
        prepare_msd(tmp_path / "Task06_Lung" / "imagesTr", out)
    (msd / "Task06_Lung/labelsTr/lung_005.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"dataset\.json: image without label: .*imagesTr/lung_005\.nii\.gz"):
        prepare_msd(msd, out)
    _nifti(msd / "Task06_Lung/labelsTr/lung_005.nii.gz")
    (msd / "Task06_Lung/imagesTs/lung_007.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"test image not found: .*imagesTs/lung_007\.nii\.gz"):
        prepare_msd(msd, out)
    assert not out.exists()


# ---------------------------------------------------------------- LiTS
def test_lits(lits, tmp_path):
    content = json.loads(prepare_lits(lits, tmp_path / "datalist.json", val_fraction=0.25).read_text())
    assert (len(content["training"]), len(content["validation"])) == (9, 3)
    assert content["labels"] == {"1": "liver", "2": "tumour"}
    numbers = []
    for item in _all_items(content):
        folder, number = re.fullmatch(r"(Training Batch [12])/volume-(\d+)\.nii", item["image"]).groups()
        assert item["label"] == f"{folder}/segmentation-{number}.nii"
        assert (lits / item["label"]).is_file()
        numbers.append(int(number))
    assert sorted(numbers) == list(range(12))
    train = [int(re.search(r"\d+", i["image"].split("/")[1]).group()) for i in content["training"]]
    assert train == sorted(train)  # numeric, not lexicographic, order


def test_lits_errors(lits, tmp_path):
    out = tmp_path / "datalist.json"
    (lits / "Training Batch 2/volume-10.nii").unlink()
    with pytest.raises(ValueError, match=r"label without image: .*segmentation-10\.nii"):
        prepare_lits(lits, out)
    assert not out.exists()


# ---------------------------------------------------------------- scripts
def run_script(argv: list[str], capsys) -> tuple[int, str, str]:
    """`python scripts/X.py ARGS` in this process (runpy, as __main__): (exit status, stdout, stderr)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", argv)
        try:
            runpy.run_path(str(REPO / argv[0]), run_name="__main__")
            code = 0
        except SystemExit as e:
            code = e.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "script, fixture", [("prepare_flare22", "flare"), ("prepare_msd", "msd"), ("prepare_lits", "lits")]
)
def test_scripts(script, fixture, request, tmp_path, capsys):
    root = request.getfixturevalue(fixture)
    out = tmp_path / "out" / "datalist.json"
    argv = [f"scripts/{script}.py", "--data_root", str(root), "--output", str(out), "--seed", "3"]
    code, stdout, stderr = run_script(argv, capsys)
    assert code == 0, stderr
    assert stdout.strip() == str(out)
    assert len(_all_items(json.loads(out.read_text()))) in (10, 9, 12)

    missing = tmp_path / "nowhere"
    code, _, stderr = run_script([*argv[:2], str(missing), *argv[3:]], capsys)
    assert code == 2 and f"data root not found or not a folder: {missing}" in stderr


@pytest.mark.parametrize("script", sorted(p.stem for p in (REPO / "scripts").glob("prepare_*.py")))
def test_prepare_scripts_are_thin_calls(script, capsys):
    """Each scripts/prepare_*.py calls its converter's CLI in monaiseg.data (no parser of its own) and shows
    its usage under its own name."""
    source = (REPO / "scripts" / f"{script}.py").read_text()
    assert "argparse" not in source and "from monaiseg.data." in source, script
    code, stdout, _ = run_script([f"scripts/{script}.py", "--help"], capsys)
    assert code == 0 and stdout.startswith(f"usage: {script}.py"), stdout


@pytest.mark.slow
def test_script_as_a_subprocess(flare, tmp_path):
    """The scripts run as `python scripts/X.py` from the repository (the in-process runs above check each)."""
    out = tmp_path / "out" / "datalist.json"
    cmd = [sys.executable, "scripts/prepare_flare22.py", "--data_root", str(flare), "--output", str(out)]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(out)
    assert len(_all_items(json.loads(out.read_text()))) == 10
