"""Synapse and ACDC converters on tiny fake trees in the official layouts, and the synthetic organ data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monaiseg.data import acdc, synapse
from monaiseg.data.acdc import prepare_acdc
from monaiseg.data.synapse import prepare_synapse
from monaiseg.data.synthetic_organs import make_synthetic_organs_dataset

SHAPE = (6, 5, 3)
CT_AFFINE = np.array([[-0.7, 0, 0, 120.0], [0, -0.7, 0, 90.0], [0, 0, 2.5, -300.0], [0, 0, 0, 1]])
MR_AFFINE = np.array([[1.4, 0, 0, -10.0], [0, 1.4, 0, 20.0], [0, 0, 10.0, 5.0], [0, 0, 0, 1]])


def save(array, affine, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), path)
    return path


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def ct_case(number: int) -> tuple[np.ndarray, np.ndarray]:
    """HU ramp -400..600 shifted by the case number; raw labels 0, 5, 6, 11, 13, 1 in known voxels."""
    image = (np.linspace(-400, 600, np.prod(SHAPE)).reshape(SHAPE) + number).astype(np.int16)
    label = np.zeros(SHAPE, np.uint8)
    label[0, 0, :] = 6  # liver -> 5
    label[1, 0, :] = 5  # esophagus -> 0
    label[2, 1, 1] = 11  # pancreas -> 8
    label[3, 1, 2] = 13  # left adrenal -> 0
    label[4, 2, 0] = 1  # spleen -> 1
    return image, label


def fake_synapse(root: Path, numbers=(1, 5, 6)) -> Path:
    """RawData/Training/{img,label}/{img,label}NNNN.nii.gz; case 1 is a standard test case, 5 and 6 training."""
    raw = root / "RawData"
    for n in numbers:
        image, label = ct_case(n)
        save(image, CT_AFFINE, raw / "Training" / "img" / f"img{n:04d}.nii.gz")
        save(label, CT_AFFINE, raw / "Training" / "label" / f"label{n:04d}.nii.gz")
    return raw


def expected_ct(number: int) -> tuple[np.ndarray, np.ndarray]:
    image, label = ct_case(number)
    norm = (np.clip(image.astype(np.float32), -125, 275) + 125) / 400
    mapped = np.zeros(SHAPE, np.uint8)
    mapped[label == 6], mapped[label == 11], mapped[label == 1] = 5, 8, 1
    return norm, mapped


def test_synapse_layout_values_and_split(tmp_path):
    src = fake_synapse(tmp_path / "src")
    before = tree_digest(src)
    datalist = prepare_synapse(src, tmp_path / "out")
    assert datalist == tmp_path / "out" / "datalist.json"
    content = json.loads(datalist.read_text())
    assert content["labels"] == {
        "0": "background",
        "1": "spleen",
        "2": "right kidney",
        "3": "left kidney",
        "4": "gallbladder",
        "5": "liver",
        "6": "stomach",
        "7": "aorta",
        "8": "pancreas",
    }
    assert [(i["case"], i["slice"]) for i in content["training"]] == [
        (c, z) for c in ("case0005", "case0006") for z in range(3)
    ]
    assert content["training"][4] == {
        "image": "slices/case0006_z001_image.npy",
        "label": "slices/case0006_z001_label.npy",
        "case": "case0006",
        "slice": 1,
    }
    assert content["test"] == [
        {"image": "volumes/case0001_image.nii.gz", "label": "volumes/case0001_label.nii.gz", "case": "case0001"}
    ]
    norm, mapped = expected_ct(6)
    image = np.load(tmp_path / "out" / "slices/case0006_z001_image.npy")
    label = np.load(tmp_path / "out" / "slices/case0006_z001_label.npy")
    assert image.dtype == np.float32 and image.shape == SHAPE[:2] and label.dtype == np.uint8
    np.testing.assert_allclose(image, norm[:, :, 1], atol=1e-6)
    np.testing.assert_array_equal(label, mapped[:, :, 1])
    assert image.min() == 0 and image.max() == 1 and ((image > 0) & (image < 1)).any()  # clipped and scaled
    assert label[2, 1] == 8 and label[3, 1] == 0 and label[0, 0] == 5 and label[1, 0] == 0
    volume, volume_label = (nib.load(tmp_path / "out" / content["test"][0][k]) for k in ("image", "label"))
    np.testing.assert_allclose(volume.affine, CT_AFFINE)
    assert volume.get_data_dtype() == np.float32 and volume_label.get_data_dtype() == np.uint8
    np.testing.assert_allclose(volume.get_fdata(), expected_ct(1)[0], atol=1e-6)
    np.testing.assert_array_equal(np.asanyarray(volume_label.dataobj), expected_ct(1)[1])
    assert tree_digest(src) == before


def test_synapse_cli_explicit_split(tmp_path, capsys):
    src = fake_synapse(tmp_path / "src")
    synapse.main(
        [
            "--src",
            str(src.parent),
            "--dst",
            str(tmp_path / "out"),
            "--train_cases",
            "1",
            "case0006",
            "--test_cases",
            "0005",
        ]
    )
    content = json.loads((tmp_path / "out" / "datalist.json").read_text())
    assert sorted({i["case"] for i in content["training"]}) == ["case0001", "case0006"]
    assert [i["case"] for i in content["test"]] == ["case0005"]
    assert capsys.readouterr().out.strip().endswith("datalist.json")
    with pytest.raises(SystemExit):
        synapse.main(["--src", str(src), "--dst", str(tmp_path / "out2"), "--test_cases", "7"])
    assert "case" in capsys.readouterr().err and not (tmp_path / "out2").exists()


def _bad_label_value(src):
    label = ct_case(5)[1]
    label[1, 1, 1] = 14
    save(label, CT_AFFINE, src / "Training/label/label0005.nii.gz")
    return "label0005.nii.gz", "label values [14] outside the known label set"


def _bad_shape(src):
    save(np.zeros((6, 5, 4), np.uint8), CT_AFFINE, src / "Training/label/label0006.nii.gz")
    return "label0006.nii.gz", "shape (6, 5, 4) differs"


def _bad_affine(src):
    save(ct_case(1)[1], np.diag([0.7, 0.7, 5.0, 1]), src / "Training/label/label0001.nii.gz")
    return "label0001.nii.gz", "affine differs"


def _missing_label(src):
    (src / "Training/label/label0006.nii.gz").unlink()
    return "label0006.nii.gz", "missing"


def _unreadable(src):
    (src / "Training/img/img0005.nii.gz").write_bytes(b"not a nifti")
    return "img0005.nii.gz", "cannot read"


@pytest.mark.parametrize("corrupt", [_bad_label_value, _bad_shape, _bad_affine, _missing_label, _unreadable])
def test_synapse_bad_input_one_error_no_output(tmp_path, corrupt):
    src = fake_synapse(tmp_path / "src")
    name, problem = corrupt(src)
    before = tree_digest(src)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        prepare_synapse(src, tmp_path / "out")
    assert name in str(info.value) and problem in str(info.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".tmp-*"))
    assert tree_digest(src) == before


def test_synapse_refuses_existing_output_and_overlapping_split(tmp_path):
    src = fake_synapse(tmp_path / "src")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="out"):
        prepare_synapse(src, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["keep.txt"]
    with pytest.raises(ValueError, match=r"cases \[5\] are in both"):
        prepare_synapse(src, tmp_path / "out2", train_cases=[5, 6], test_cases=["case0005"])


def test_standard_synapse_split():
    assert len(synapse.SYNAPSE_TRAIN_CASES) == 18 and len(synapse.SYNAPSE_TEST_CASES) == 12
    assert sorted(synapse.SYNAPSE_TRAIN_CASES + synapse.SYNAPSE_TEST_CASES) == [*range(1, 11), *range(21, 41)]


# --- ACDC ---------------------------------------------------------------------------------------


def mr_frame(patient: int, frame: int) -> tuple[np.ndarray, np.ndarray]:
    image = np.linspace(10, 500, np.prod(SHAPE)).reshape(SHAPE).astype(np.float32) * (patient + frame)
    gt = np.zeros(SHAPE, np.uint8)
    gt[1:3, 1:3, :] = 3
    gt[3, 1:3, :] = 2
    gt[4, 1, 1] = 1
    return image, gt


def fake_acdc(root: Path, patients=(1, 2, 19), folder="training") -> Path:
    """training/patientNNN/{Info.cfg, patientNNN_frame01[_gt].nii.gz, patientNNN_frame03[_gt].nii.gz}."""
    for p in patients:
        d = root / folder / f"patient{p:03d}"
        d.mkdir(parents=True)
        (d / "Info.cfg").write_text("ED: 1\nES: 3\nGroup: NOR\nHeight: 180.0\nNbFrame: 30\nWeight: 80.0\n")
        for f in (1, 3):
            image, gt = mr_frame(p, f)
            save(image, MR_AFFINE, d / f"patient{p:03d}_frame{f:02d}.nii.gz")
            save(gt, MR_AFFINE, d / f"patient{p:03d}_frame{f:02d}_gt.nii.gz")
    return root


def test_acdc_layout_phases_and_normalisation(tmp_path):
    src = fake_acdc(tmp_path / "database")
    before = tree_digest(src)
    datalist = prepare_acdc(src, tmp_path / "out")
    content = json.loads(datalist.read_text())
    assert content["labels"] == {"0": "background", "1": "RV", "2": "Myo", "3": "LV"}
    assert [(i["case"], i["slice"], i["phase"]) for i in content["training"]] == [
        (f"patient001_frame{f:02d}", z, phase) for f, phase in ((1, "ED"), (3, "ES")) for z in range(3)
    ]
    assert [(i["case"], i["patient"]) for i in content["validation"]] == [
        ("patient019_frame01", "patient019"),
        ("patient019_frame03", "patient019"),
    ]
    assert [i["image"] for i in content["test"]] == [
        "volumes/patient002_frame01_image.nii.gz",
        "volumes/patient002_frame03_image.nii.gz",
    ]
    raw, gt = mr_frame(1, 3)
    image = np.load(tmp_path / "out" / "slices/patient001_frame03_z002_image.npy")
    np.testing.assert_allclose(image, ((raw - raw.min()) / (raw.max() - raw.min()))[:, :, 2], atol=1e-6)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "slices/patient001_frame03_z002_label.npy"), gt[:, :, 2])
    volume = nib.load(tmp_path / "out" / "volumes/patient002_frame03_label.nii.gz")
    np.testing.assert_allclose(volume.affine, MR_AFFINE)
    np.testing.assert_array_equal(np.asanyarray(volume.dataobj), mr_frame(2, 3)[1])
    assert tree_digest(src) == before


def test_acdc_cli_explicit_patients(tmp_path, capsys):
    src = fake_acdc(tmp_path / "acdc", patients=(101, 102), folder="testing")
    acdc.main(["--src", str(src), "--dst", str(tmp_path / "out"), "--train_patients", "101", "--test_patients", "102"])
    content = json.loads((tmp_path / "out" / "datalist.json").read_text())
    assert "validation" not in content and len(content["training"]) == 6 and len(content["test"]) == 2
    assert capsys.readouterr().out.strip().endswith("datalist.json")


def _acdc_bad_value(src):
    gt = mr_frame(2, 1)[1]
    gt[0, 0, 0] = 4
    save(gt, MR_AFFINE, src / "training/patient002/patient002_frame01_gt.nii.gz")
    return "patient002_frame01_gt.nii.gz", "label values [4] outside the known label set"


def _acdc_no_info(src):
    (src / "training/patient019/Info.cfg").unlink()
    return "patient019/Info.cfg", "not found"


def _acdc_missing_frame(src):
    (src / "training/patient001/patient001_frame03_gt.nii.gz").unlink()
    return "patient001_frame03_gt.nii.gz", "missing (ES frame"


def _acdc_geometry(src):
    save(mr_frame(1, 1)[1], np.diag([1.4, 1.4, 5.0, 1]), src / "training/patient001/patient001_frame01_gt.nii.gz")
    return "patient001_frame01_gt.nii.gz", "affine differs"


@pytest.mark.parametrize("corrupt", [_acdc_bad_value, _acdc_no_info, _acdc_missing_frame, _acdc_geometry])
def test_acdc_bad_input_one_error_no_output(tmp_path, corrupt):
    src = fake_acdc(tmp_path / "database")
    name, problem = corrupt(src)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        prepare_acdc(src, tmp_path / "out")
    assert name in str(info.value) and problem in str(info.value)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".tmp-*"))


def test_standard_acdc_split():
    splits = (acdc.ACDC_TRAIN_PATIENTS, acdc.ACDC_VALIDATION_PATIENTS, acdc.ACDC_TEST_PATIENTS)
    assert [len(s) for s in splits] == [70, 10, 20] and sorted(sum(splits, ())) == list(range(1, 101))


# --- synthetic ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, labels", [("synapse", synapse.SYNAPSE_LABELS), ("acdc", acdc.ACDC_LABELS)])
def test_synthetic_organs_layout(tmp_path, kind, labels):
    datalist = make_synthetic_organs_dataset(
        tmp_path / kind, kind=kind, train_cases=2, test_cases=1, shape=(48, 48, 10), seed=1
    )
    content = json.loads(datalist.read_text())
    assert content["labels"] == {str(k): v for k, v in labels.items()}
    assert len(content["training"]) == 20 and len(content["test"]) == 1
    slices = [np.load(datalist.parent / i["label"]) for i in content["training"]]
    images = [np.load(datalist.parent / i["image"]) for i in content["training"]]
    assert all(s.shape == (48, 48) and s.dtype == np.uint8 for s in slices)
    assert all(i.dtype == np.float32 and i.min() >= 0 and i.max() <= 1 for i in images)
    volume = nib.load(datalist.parent / content["test"][0]["label"])
    assert volume.shape == (48, 48, 10) and volume.header.get_zooms() == pytest.approx(
        {"synapse": (0.8, 0.8, 3.0), "acdc": (1.5, 1.5, 8.0)}[kind]
    )
    assert set(np.unique(np.stack(slices))) == set(labels)  # every organ drawn
    test_labels = np.asanyarray(volume.dataobj)
    image = nib.load(datalist.parent / content["test"][0]["image"]).get_fdata()
    means = [image[test_labels == v].mean() for v in sorted(labels)]
    assert len(set(np.round(means, 2))) == len(labels)  # organs differ in intensity
    again = make_synthetic_organs_dataset(
        tmp_path / "again", kind=kind, train_cases=2, test_cases=1, shape=(48, 48, 10), seed=1
    )
    np.testing.assert_array_equal(np.load(again.parent / content["training"][3]["image"]), images[3])


def test_synthetic_organs_bad_kind(tmp_path):
    with pytest.raises(ValueError, match="kind must be one of"):
        make_synthetic_organs_dataset(tmp_path / "x", kind="brain")
    assert not (tmp_path / "x").exists()
