"""Synthetic FLARE22-like CT generator: files, geometry, labels, HU ranges, determinism."""

import json
import time

import nibabel as nib
import numpy as np
import pytest

from monaiseg.data.synthetic_ct import (
    SYNTHETIC_CT_LABELS,
    main,
    make_synthetic_ct,
    make_synthetic_ct_dataset,
)

SHAPE = (64, 64, 24)
LIVER, RIGHT_KIDNEY, SPLEEN, AORTA, LEFT_KIDNEY = 1, 2, 3, 5, 13


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return root, make_synthetic_ct_dataset(root, num_cases=4, seed=0)


def _cases(root, datalist):
    content = json.loads(datalist.read_text())
    return [item for split in ("training", "validation", "testing") for item in content[split]]


def test_files_and_datalist(dataset):
    root, datalist = dataset
    assert datalist == root / "datalist.json"
    content = json.loads(datalist.read_text())
    assert {k: len(v) for k, v in content.items() if k != "labels"} == {"training": 2, "validation": 1, "testing": 1}
    assert content["labels"] == {"1": "liver", "2": "right kidney", "3": "spleen", "5": "aorta", "13": "left kidney"}
    images = sorted(item["image"] for item in _cases(root, datalist))
    assert images == [f"imagesTr/case_{i:03d}.nii.gz" for i in range(4)]
    for item in _cases(root, datalist):
        assert item["label"] == item["image"].replace("imagesTr", "labelsTr")
        assert (root / item["image"]).is_file() and (root / item["label"]).is_file()
    assert not list(root.glob(".tmp-*"))


def test_geometry_and_dtypes(dataset):
    root, _ = dataset
    image = nib.load(root / "imagesTr/case_000.nii.gz")
    label = nib.load(root / "labelsTr/case_000.nii.gz")
    for nii in (image, label):
        assert nii.shape == SHAPE
        np.testing.assert_allclose(nii.affine, np.diag([1.5, 1.5, 3.0, 1.0]))
        np.testing.assert_allclose(nii.header.get_zooms(), (1.5, 1.5, 3.0))
        assert nii.header.get_xyzt_units()[0] == "mm"
    assert image.get_data_dtype() == np.int16 and label.get_data_dtype() == np.uint8


def test_labels_hu_and_anatomy(dataset):
    root, datalist = dataset
    for item in _cases(root, datalist):
        image = np.asanyarray(nib.load(root / item["image"]).dataobj)
        label = np.asanyarray(nib.load(root / item["label"]).dataobj)
        assert set(np.unique(label)) == {0, *SYNTHETIC_CT_LABELS}
        median = {v: np.median(image[label == v]) for v in SYNTHETIC_CT_LABELS}
        assert 50 <= median[LIVER] <= 70 and 40 <= median[SPLEEN] <= 60
        assert 135 <= median[RIGHT_KIDNEY] <= 165 and 135 <= median[LEFT_KIDNEY] <= 165
        assert 185 <= median[AORTA] <= 215
        assert -1010 <= np.median(image[:4, :4]) <= -990  # air in the corners
        assert np.median(image[32, 32:]) < 0 and -150 <= np.median(image[32, 40]) <= 60  # body
        assert np.count_nonzero(image > 600) > 100  # spine, saturated by a 40/400 window
        assert 8 <= image[label == LIVER].std() <= 16  # noise
        # RAS: +x is the patient's right, so liver and right kidney have the larger x
        centre_x = {v: np.argwhere(label == v)[:, 0].mean() for v in SYNTHETIC_CT_LABELS}
        assert centre_x[LIVER] > 32 > centre_x[SPLEEN]
        assert centre_x[RIGHT_KIDNEY] > 32 > centre_x[LEFT_KIDNEY]


def test_organs_start_and_end_inside_z():
    for case in range(5):
        _, label = make_synthetic_ct(SHAPE, seed=(0, case))
        for value in (LIVER, RIGHT_KIDNEY, SPLEEN, LEFT_KIDNEY):
            area = (label == value).sum(axis=(0, 1))
            slices = np.flatnonzero(area)
            assert slices[0] >= 1 and slices[-1] <= SHAPE[2] - 2
            assert len(slices) == slices[-1] - slices[0] + 1  # one contiguous run
            assert area.max() >= 2 * area[slices[0]]  # cross-section changes along z
        assert (label == AORTA).any(axis=(0, 1)).all()


def test_determinism_and_seed():
    image_a, label_a = make_synthetic_ct(SHAPE, seed=(7, 0))
    image_b, label_b = make_synthetic_ct(SHAPE, seed=(7, 0))
    image_c, label_c = make_synthetic_ct(SHAPE, seed=(8, 0))
    np.testing.assert_array_equal(image_a, image_b)
    np.testing.assert_array_equal(label_a, label_b)
    assert not np.array_equal(label_a, label_c)


def test_dataset_determinism(tmp_path, dataset):
    root, datalist = dataset
    again = make_synthetic_ct_dataset(tmp_path, num_cases=4, seed=0)
    assert again.read_text() == datalist.read_text()
    for name in ("imagesTr/case_003.nii.gz", "labelsTr/case_003.nii.gz"):
        np.testing.assert_array_equal(
            np.asanyarray(nib.load(tmp_path / name).dataobj), np.asanyarray(nib.load(root / name).dataobj)
        )


def test_split_counts(tmp_path):
    datalist = make_synthetic_ct_dataset(
        tmp_path, num_cases=3, shape=(16, 16, 8), splits={"training": 2, "validation": 1}
    )
    content = json.loads(datalist.read_text())
    assert [item["image"] for item in content["training"]] == ["imagesTr/case_000.nii.gz", "imagesTr/case_001.nii.gz"]
    assert [item["image"] for item in content["validation"]] == ["imagesTr/case_002.nii.gz"]
    with pytest.raises(ValueError, match="do not sum to num_cases=3"):
        make_synthetic_ct_dataset(tmp_path / "bad", num_cases=3, splits={"training": 1})


def test_speed():
    start = time.perf_counter()
    for case in range(5):
        make_synthetic_ct(SHAPE, seed=(0, case))
    assert (time.perf_counter() - start) / 5 < 1.0


def test_cli(tmp_path, capsys):
    main(["--out", str(tmp_path), "--num_cases", "2", "--shape", "32", "32", "12", "--seed", "3"])
    assert capsys.readouterr().out.strip() == str(tmp_path / "datalist.json")
    assert nib.load(tmp_path / "imagesTr/case_001.nii.gz").shape == (32, 32, 12)
