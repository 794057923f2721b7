"""Every image a user has, through the 2D batch command (lite_medsam and medsam: inference.json +
images_2d.json + batch_inference.json; sam_med2d: inference.json + batch_inference.json), on real shared images
converted in the test: a DeepLesion CT slice as 8-bit PNG, 16-bit PNG, z-scored float TIFF and float 2D NIfTI,
and RGB (a white-blood-cell BMP, a colonoscopy JPEG). The intensity rule (min-max per image, docs) makes the
grey kinds one image to the model: their label maps agree."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO, SHARED
from PIL import Image

from monaiseg.prompts import mask_box

DATA = SHARED / "data"
pytestmark = pytest.mark.skipif(
    not all((DATA / d).is_dir() for d in ("deeplesion_ct", "wbc_cellavision", "endotect_polyp")),
    reason="../shared/data (deeplesion_ct, wbc_cellavision, endotect_polyp) not present",
)


def write_kinds(folder) -> dict[str, tuple[int, int]]:
    """The folder of inputs, each with its `<name>_prompts.json` (the ground truth's tight box, inclusive
    pixels); returns name -> (rows, cols)."""
    folder.mkdir()
    ct = np.load(next((DATA / "deeplesion_ct").glob("*.npz")))
    k = int(np.argmax(ct["gts"].reshape(len(ct["gts"]), -1).sum(1)))
    grey, lesion = ct["imgs"][k][::4, ::4], ct["gts"][k][::4, ::4] > 0  # 128 x 128, keeps the runs short
    z = ((grey - grey.mean()) / grey.std()).astype(np.float32)
    Image.fromarray(grey).save(folder / "ct_8bit.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(folder / "ct_16bit.png")
    Image.fromarray(z).save(folder / "ct_float.tif")
    nib.save(nib.Nifti1Image(np.ascontiguousarray(z.T), np.eye(4)), folder / "ct_nifti.nii.gz")  # axis 0 = x
    wbc = Image.open(DATA / "wbc_cellavision" / "001.bmp")
    wbc.save(folder / "wbc_rgb.bmp")
    polyp_path = sorted((DATA / "endotect_polyp" / "images").glob("*.jpg"))[0]
    polyp = Image.open(polyp_path)
    polyp = polyp.resize((polyp.width // 4, polyp.height // 4))
    polyp.save(folder / "polyp_rgb.jpg")
    polyp_mask = np.asarray(Image.open(DATA / "endotect_polyp" / "masks" / (polyp_path.stem + ".png")).convert("L"))
    boxes = {
        **{n: mask_box(lesion) for n in ("ct_8bit", "ct_16bit", "ct_float", "ct_nifti")},
        "wbc_rgb": mask_box(np.asarray(Image.open(DATA / "wbc_cellavision" / "001.png")) == 255),
        "polyp_rgb": mask_box(polyp_mask[::4, ::4][: polyp.height, : polyp.width] > 127),
    }
    for name, box in boxes.items():
        (folder / f"{name}_prompts.json").write_text(json.dumps({"objects": [{"label": 1, "box": list(box)}]}))
    shapes = dict.fromkeys(("ct_8bit", "ct_16bit", "ct_float", "ct_nifti"), grey.shape)
    return {**shapes, "wbc_rgb": (wbc.height, wbc.width), "polyp_rgb": (polyp.height, polyp.width)}


def configs(bundle: str, *names: str) -> list[str]:
    return [str(REPO / "bundles" / bundle / "configs" / n) for n in names]


@pytest.mark.slow
@pytest.mark.parametrize(
    "bundle, names",
    [
        ("lite_medsam", ("inference.json", "images_2d.json", "batch_inference.json", "tiny.json")),
        ("medsam", ("inference.json", "images_2d.json", "batch_inference.json", "tiny.json")),
        ("sam_med2d", ("inference.json", "batch_inference.json", "tiny.json")),
    ],
)
def test_grey_8_16_float_nifti_and_rgb_images(tmp_path, bundle, names):
    """Each kind -> `<name>_seg.png` in the image's shape; the 16-bit, float and NIfTI slices give the same label
    map, the 8-bit one the same up to the resize's rounding of 8-bit values (>= 99 % of pixels)."""
    from monaiseg.utils import run_bundle

    shapes = write_kinds(tmp_path / "in")
    out = tmp_path / "out"
    run_bundle(
        configs(bundle, *names),
        in_process=True,
        bundle_root=tmp_path,
        output_dir=out,
        input_dir=tmp_path / "in",
        input_suffix="*",
    )
    assert sorted(p.name for p in out.glob("*_seg.png")) == sorted(f"{n}_seg.png" for n in shapes)
    segs = {n: np.asarray(Image.open(out / f"{n}_seg.png")) for n in shapes}
    for name, shape in shapes.items():
        assert segs[name].shape == shape, name
        assert set(np.unique(segs[name])) <= {0, 1}, name
    np.testing.assert_array_equal(segs["ct_16bit"], segs["ct_float"])
    np.testing.assert_array_equal(segs["ct_nifti"], segs["ct_float"])
    assert (segs["ct_8bit"] == segs["ct_float"]).mean() >= 0.99
