"""DeepLesion ``.npz`` crops (MedSAM2 format): loading, NIfTI conversion round trip, errors."""

import nibabel as nib
import numpy as np
import pytest
from conftest import SHARED

import monaiseg.data.medsam_npz as deeplesion
from monaiseg.data.medsam_npz import deeplesion_npz_to_nifti, load_deeplesion_npz

DATA = SHARED / "data" / "deeplesion_ct"
# file -> (D, H, W), in-plane spacing in mm; both have 5 mm slices
REAL = {
    "CT_Lesion_000001_02_01_008-023.npz": ((16, 512, 512), 0.31445301),
    "CT_Lesion_000002_03_01_035-047.npz": ((13, 512, 512), 0.97656202),
}


@pytest.fixture
def real():
    if not DATA.is_dir():
        pytest.skip(f"real DeepLesion samples not found at {DATA} (shared data folder absent)")
    return DATA


@pytest.mark.parametrize("name", sorted(REAL))
def test_load_real(real, name):
    case = load_deeplesion_npz(real / name)
    shape, in_plane = REAL[name]
    assert case["image"].shape == case["label"].shape == shape
    assert case["image"].dtype == case["label"].dtype == np.uint8
    assert case["image"].min() == 0 and case["image"].max() == 255
    assert set(np.unique(case["label"])) == {0, 1}
    np.testing.assert_allclose(case["spacing"], (5.0, in_plane, in_plane))  # (sz, sy, sx)
    lesion_slices = np.flatnonzero(case["label"].any(axis=(1, 2)))
    assert lesion_slices[0] > 0 and lesion_slices[-1] < shape[0] - 1  # lesion inside the crop


@pytest.mark.parametrize("name", sorted(REAL))
def test_nifti_round_trip(real, name, tmp_path):
    case = load_deeplesion_npz(real / name)
    image_path, label_path = deeplesion_npz_to_nifti(real / name, tmp_path)
    stem = name.removesuffix(".npz")
    assert (image_path, label_path) == (tmp_path / f"{stem}_image.nii.gz", tmp_path / f"{stem}_label.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == [image_path.name, label_path.name]
    (d, h, w), in_plane = REAL[name]
    for path, array in ((image_path, case["image"]), (label_path, case["label"])):
        nii = nib.load(path)
        data = np.asanyarray(nii.dataobj)
        assert data.shape == (w, h, d) and data.dtype == np.uint8
        np.testing.assert_array_equal(data, array.transpose(2, 1, 0))
        np.testing.assert_array_equal(data[:, :, d // 2], array[d // 2].T)  # slice k along the last axis
        np.testing.assert_allclose(nii.header.get_zooms(), (in_plane, in_plane, 5.0), rtol=1e-6)
        np.testing.assert_allclose(nii.affine, np.diag([in_plane, in_plane, 5.0, 1.0]), rtol=1e-6)


def _npz(path, **arrays):
    np.savez_compressed(path, **arrays)
    return path


def _arrays(depth=3, label_shape=None):
    image = np.arange(depth * 4 * 5, dtype=np.uint8).reshape(depth, 4, 5)
    label = np.zeros(label_shape or image.shape, np.uint8)
    return {"imgs": image, "gts": label, "spacing": np.array([0.8, 0.8, 2.5])}


def test_small_file_axes(tmp_path):
    path = _npz(tmp_path / "case.npz", **_arrays())
    case = load_deeplesion_npz(path)
    np.testing.assert_allclose(case["spacing"], (2.5, 0.8, 0.8))
    image_path, _ = deeplesion_npz_to_nifti(path, tmp_path / "out")
    nii = nib.load(image_path)
    assert nii.shape == (5, 4, 3)
    assert np.asanyarray(nii.dataobj)[4, 1, 2] == case["image"][2, 1, 4]  # (x, y, z) = (w, h, d)


def test_errors(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=r"not found: .*absent\.npz"):
        load_deeplesion_npz(tmp_path / "absent.npz")

    arrays = _arrays()
    del arrays["gts"]
    with pytest.raises(ValueError, match=r"nogts\.npz: missing keys \['gts'\]"):
        deeplesion_npz_to_nifti(_npz(tmp_path / "nogts.npz", **arrays), out)
    with pytest.raises(ValueError, match=r"shape\.npz: .*imgs \(3, 4, 5\), gts \(2, 4, 5\)"):
        load_deeplesion_npz(_npz(tmp_path / "shape.npz", **_arrays(label_shape=(2, 4, 5))))

    (tmp_path / "garbage.npz").write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match=r"garbage\.npz: not a readable \.npz"):
        load_deeplesion_npz(tmp_path / "garbage.npz")
    good = _npz(tmp_path / "good.npz", **_arrays(depth=40)).read_bytes()
    (tmp_path / "truncated.npz").write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"truncated\.npz: not a readable \.npz"):
        load_deeplesion_npz(tmp_path / "truncated.npz")
    assert not out.exists()


def test_no_partial_output(tmp_path, monkeypatch):
    path = _npz(tmp_path / "case.npz", **_arrays())
    calls = []

    def failing_save(array, spacing, target):
        calls.append(target)
        if len(calls) == 2:
            raise OSError("disk full")
        return nib.save(nib.Nifti1Image(array, np.eye(4)), target)

    monkeypatch.setattr(deeplesion, "save_nifti", failing_save)
    with pytest.raises(OSError, match="disk full"):
        deeplesion_npz_to_nifti(path, tmp_path / "out")
    assert len(calls) == 2 and list((tmp_path / "out").iterdir()) == []
