import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged

from monaiseg.transforms import CheckImaged, CTWindow, CTWindowd, MRPercentileNormalize, MRPercentileNormalized


def test_ct_window_default_level_40_width_400():
    hu = MetaTensor(torch.tensor([[-1000.0, -160.0, 40.0, 140.0, 240.0, 3000.0]]), meta={"filename_or_obj": "ct.nii"})
    out = CTWindowd("image")({"image": hu})["image"]
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, 0.5, 0.75, 1.0, 1.0]]))
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "ct.nii"


def test_ct_window_custom_level_width():
    hu = torch.tensor([-100.0, 0.0, 25.0, 100.0, 200.0])
    assert torch.allclose(CTWindowd("x", level=50, width=100)({"x": hu})["x"], torch.tensor([0.0, 0.0, 0.25, 1.0, 1.0]))
    assert torch.allclose(CTWindow(level=50, width=100)(hu), torch.tensor([0.0, 0.0, 0.25, 1.0, 1.0]))


def test_mr_percentiles_over_nonzero_voxels_only():
    # 201 foreground values 1..201 among 800 background zeros: over the non-zero voxels the
    # 0.5th percentile is at rank 0.005 * 200 = 1 -> value 2, the 99.5th at rank 199 -> value 200
    # (over all voxels the 0.5th percentile would be 0).
    fg = np.arange(1, 202, dtype=np.float32)
    img = np.concatenate([np.zeros(800, np.float32), fg])[None]  # (1, 1001)
    out = MRPercentileNormalized("image")({"image": img})["image"]
    out = torch.as_tensor(out)[0]
    assert torch.all(out[:800] == 0)  # background stays 0
    expected = (np.clip(fg, 2.0, 200.0) - 2.0) / 198.0
    assert torch.allclose(out[800:], torch.from_numpy(expected), atol=1e-6)
    assert out[800 + 100].item() == pytest.approx(0.5)  # value 101
    assert out.min() == 0.0 and out.max() == 1.0


def test_mr_min_max_ignores_background():
    img = torch.tensor([[0.0, 10.0, 20.0, 30.0, 0.0]])
    out = MRPercentileNormalize(lower=0, upper=100)(img)
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, 0.5, 1.0, 0.0]]))
    assert torch.all(MRPercentileNormalize()(torch.zeros(1, 4)) == 0)


def test_check_image_passes_valid_data_unchanged():
    img = MetaTensor(torch.rand(1, 4, 5, 6), meta={"filename_or_obj": "/d/ok.nii.gz"})
    out = CheckImaged("image", spatial_dims=3)({"image": img, "label": 1})
    assert out["image"] is img and out["label"] == 1


@pytest.mark.parametrize(
    "value, problem", [(float("nan"), "NaN or Inf"), (float("inf"), "NaN or Inf"), (None, "constant")]
)
def test_check_image_bad_values_name_the_file(value, problem):
    img = torch.ones(1, 4, 4, 4)
    if value is not None:
        img[0, 1, 1, 1] = value
    img = MetaTensor(img, meta={"filename_or_obj": "/data/case_07.nii.gz"})
    with pytest.raises(ValueError, match=rf"^/data/case_07\.nii\.gz: .*{problem}"):
        CheckImaged("image")({"image": img})


def test_check_image_names_the_key_without_meta():
    with pytest.raises(ValueError, match="^image: image is empty or constant"):
        CheckImaged("image")({"image": torch.zeros(1, 3, 3)})


@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 8, 8, 1), (8, 8, 8, 8, 2)])
def test_check_image_spatial_dims(shape):
    img = MetaTensor(torch.rand(shape), meta={"filename_or_obj": "slice.png"})
    with pytest.raises(ValueError, match=r"^slice\.png: not a 3D volume: shape \(" + ", ".join(map(str, shape))):
        CheckImaged("image", spatial_dims=3)({"image": img})
    if len(shape) == 3:
        CheckImaged("image", spatial_dims=2)({"image": img})  # a valid 2D image


def test_check_image_after_loading_a_file(tmp_path):
    arr = np.random.default_rng(0).random((6, 6, 4)).astype(np.float32)
    arr[2, 2, 2] = np.nan
    path = tmp_path / "bad_case.nii.gz"
    nib.save(nib.Nifti1Image(arr, np.eye(4)), path)
    load = Compose([LoadImaged("image", image_only=True), EnsureChannelFirstd("image"), CheckImaged("image", 3)])
    with pytest.raises(RuntimeError) as err:  # MONAI's Compose wraps the error
        load({"image": str(path)})
    assert isinstance(err.value.__cause__, ValueError)
    assert str(err.value.__cause__) == f"{path}: image contains NaN or Inf values."
