"""lite_medsam served with its released weights (not tiny.json) through MONAI Label's own client: the
returned mask lies where the box prompt was. 2D: inside the ROI and Dice >= 0.8 on a drawn ellipse,
one shared WBC image and one DeepLesion slice; 3D (a Slicer ROI around a drawn ellipsoid and a
cropped DeepLesion lesion): every slice holding the object is labelled, none beyond its ends, all
inside the box. The server is shared (tests/label/conftest.py); the shared sets skip when absent."""

from __future__ import annotations

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
from conftest import SHARED
from monailabel.client import MONAILabelClient
from PIL import Image

from monaiseg.label.prompts import object_prompts, parse_objects
from monaiseg.label.runtime import RequestError
from monaiseg.metrics import binary_dice
from monaiseg.transforms.clicks import error_region_click

pytestmark = pytest.mark.slow

WBC = SHARED / "data" / "wbc_cellavision"
DEEPLESION = SHARED / "data" / "deeplesion_ct"
SLACK = 2  # pixels a mask may pass its box by (the letterbox resize back to the image)


@pytest.fixture(scope="module")
def server(shared_server, tmp_path_factory):
    """The package's shared server (tests/label/conftest.py: lite_medsam with its released weights), a client
    and a folder for the files sent."""
    root = tmp_path_factory.mktemp("real_weights")
    return SimpleNamespace(
        client=MONAILabelClient(shared_server.url, tmpdir=str(root), client_id="real_weights"), tmp=root
    )


def ellipse(shape: tuple[int, ...], centre, radii) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1


def box_of(mask: np.ndarray) -> list[int]:
    """[i0, j0, i1, j1] of a (rows, columns) mask: i along columns, j along rows (MONAI Label's ROI)."""
    rows, cols = np.nonzero(mask)
    return [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())]


def outside(mask: np.ndarray, roi: list[int]) -> int:
    """Pixels of a (rows, columns) mask further than SLACK from the ROI [i0, j0, i1, j1]."""
    keep = np.zeros_like(mask)
    keep[max(roi[1] - SLACK, 0) : roi[3] + SLACK + 1, max(roi[0] - SLACK, 0) : roi[2] + SLACK + 1] = True
    return int((mask & ~keep).sum())


def drawn_ellipse() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    truth = ellipse((120, 160), (58, 70), (30, 45))
    image = np.clip(60 + 120 * truth + rng.normal(0, 12, truth.shape), 0, 255).astype(np.uint8)
    return image, truth


def wbc_image() -> tuple[np.ndarray, np.ndarray]:
    if not WBC.is_dir():
        pytest.skip(f"{WBC} not present")
    image = np.asarray(Image.open(WBC / "001.bmp").convert("RGB"))
    return image, np.asarray(Image.open(WBC / "001.png")) > 0  # the whole cell: nucleus and cytoplasm


def lesion_case() -> tuple[np.ndarray, np.ndarray]:
    """The first DeepLesion crop: (D, H, W) windowed uint8 slices and the lesion mask."""
    files = sorted(DEEPLESION.glob("*.npz"))
    if not files:
        pytest.skip(f"{DEEPLESION} not present")
    with np.load(files[0]) as case:
        return case["imgs"], case["gts"] > 0


def lesion_slice() -> tuple[np.ndarray, np.ndarray]:
    images, truth = lesion_case()
    k = int(truth.sum((1, 2)).argmax())
    return images[k], truth[k]


@pytest.mark.parametrize("case", [drawn_ellipse, wbc_image, lesion_slice], ids=["ellipse", "wbc", "deeplesion"])
def test_2d_box_gives_the_object_inside_the_box(server, case):
    image, truth = case()
    path = server.tmp / f"{case.__name__}.png"
    Image.fromarray(image).save(path)
    roi = box_of(truth)
    out, result = server.client.infer("lite_medsam", "", {"label": "object", "roi": roi}, file=str(path))
    mask = np.asarray(Image.open(out)) > 0
    assert mask.shape == truth.shape, (mask.shape, result)
    assert outside(mask, roi) == 0
    assert binary_dice(mask, truth) >= 0.8, binary_dice(mask, truth)


def drawn_ellipsoid() -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z) HU volume and its object: an ellipsoid on slices 3..9 of 13."""
    rng = np.random.default_rng(1)
    truth = ellipse((64, 72, 13), (30, 38, 6), (16, 20, 3.6))
    return np.round(20 + 130 * truth + rng.normal(0, 10, truth.shape)).astype(np.int16), truth


def lesion_volume() -> tuple[np.ndarray, np.ndarray]:
    """The first DeepLesion crop cut to 96 x 96 around the lesion and 3 slices beyond its ends, as
    (X, Y, Z) HU that lite_medsam's CT window (level 40, width 400) maps back to the windowed values."""
    images, truth = lesion_case()
    zs, rows, cols = (np.nonzero(truth.any(axes))[0] for axes in ((1, 2), (0, 2), (0, 1)))
    r, c = int(rows.mean()) - 48, int(cols.mean()) - 48
    crop = (slice(max(zs.min() - 3, 0), zs.max() + 4), slice(r, r + 96), slice(c, c + 96))
    hu = -160 + images[crop].astype(np.float32) * 400 / 255
    return np.round(hu).astype(np.int16).transpose(2, 1, 0), truth[crop].transpose(2, 1, 0)


@pytest.mark.parametrize("case", [drawn_ellipsoid, lesion_volume], ids=["ellipsoid", "deeplesion"])
def test_3d_roi_labels_every_object_slice_and_stays_in_its_box(server, case):
    """A 3D Slicer ROI around the object (its slice range k0..k1): box carry from the middle slice
    labels every slice holding the object and none beyond (with the middle slice alone, the carry's
    IoU stop rule missed the lesion's last slice here: docs/monai_label.md)."""
    volume, truth = case()
    path = server.tmp / f"{case.__name__}.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 5.0, 1.0])), path)
    xs, ys, zs = np.nonzero(truth)
    roi = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()), int(zs.min()), int(zs.max())]
    out, result = server.client.infer("lite_medsam", "", {"label": "object", "roi": roi}, file=str(path))
    label = np.asarray(nib.load(out).dataobj) > 0
    assert label.shape == truth.shape, (label.shape, result)
    holding, labelled = np.unique(zs), np.nonzero(label.any((0, 1)))[0]
    assert set(holding) <= set(labelled), (holding, labelled)
    assert labelled.min() >= holding.min() - 1 and labelled.max() <= holding.max() + 1, (holding, labelled)
    assert all(outside(label[..., k].T, roi[:4]) == 0 for k in labelled)
    assert binary_dice(label, truth) >= 0.8, binary_dice(label, truth)


def test_a_lone_3d_roi_is_its_objects_slice_range():
    lone = parse_objects({"label": "object", "roi": [1, 2, 5, 6, 3, 7]}, (8, 9, 10), {"object": 1})
    assert [(p.frame, p.frame_range) for p in object_prompts(lone)] == [(5, (3, 7))]
    flat = parse_objects({"label": "object", "roi": [1, 2, 5, 6, 4, 4]}, (8, 9, 10), {"object": 1})
    assert object_prompts(flat)[0].frame_range is None
    clicked = {"label": "object", "roi": [1, 2, 5, 6, 3, 7], "foreground": [[2, 3, 1]]}
    assert [p.frame_range for p in object_prompts(parse_objects(clicked, (8, 9, 10), {"object": 1}))] == [None, None]
    with pytest.raises(RequestError, match="outside the image"):
        parse_objects({"label": "object", "roi": [1, 2, 5, 6, 3, 10]}, (8, 9, 10), {"object": 1})
    with pytest.raises(RequestError, match="k0 > k1"):
        parse_objects({"label": "object", "roi": [1, 2, 5, 6, 7, 3]}, (8, 9, 10), {"object": 1})


def clicked(client, path, truth: np.ndarray, clicks: int) -> list[float]:
    """Dice after requests with the protocol's clicks 1..`clicks` (each at the centre of the largest
    error region; a request sends all clicks so far, as 3D Slicer does) on a 2D image (rows, columns)."""
    scores, sent, pred = [], {"foreground": [], "background": []}, np.zeros_like(truth)
    for _ in range(clicks):
        x, y, label = error_region_click(pred, truth)
        sent["foreground" if label == 1 else "background"].append([x, y])  # (i, j) = (column, row)
        out, _ = client.infer("lite_medsam", "", {"label": "object", **sent}, file=str(path))
        pred = np.asarray(Image.open(out)) > 0
        scores.append(binary_dice(pred, truth))
    return scores


def test_2d_clicks_on_a_box_trained_model_find_the_object_and_corrections_never_lower_dice(server):
    """lite_medsam takes clicks: a first click at the object's centre finds it (candidate boxes chosen by
    predicted IoU); a second click at the centre of the largest error region corrects it, changing at most
    the click's disk of the region it is in (`click_seed.merge_click`). The issue's requirement: Dice never
    falls from click 1 to click 2, on each image and so in the mean (float noise aside). Before the disk
    bound, the DeepLesion slice fell from 0.974 to 0.954 (a negative click removed 156 pixels of an
    81-pixel false positive)."""
    rows = []
    for case in (wbc_image, lesion_slice):
        image, truth = case()
        path = server.tmp / f"click_{case.__name__}.png"
        Image.fromarray(image).save(path)
        rows.append(clicked(server.client, path, truth, 2))
    mean = np.mean(rows, axis=0)
    assert mean[0] >= 0.7, rows
    assert all(b >= a - 1e-6 for row in rows for a, b in zip(row, row[1:])), rows
    assert all(b >= a - 1e-6 for a, b in zip(mean, mean[1:])), rows


def test_a_click_on_a_carried_lesion_never_lowers_dice_where_it_does_not_retrack(server):
    """The issue's case: a foreground click at the lesion's centre on the key slice of a carried DeepLesion
    result (a correction) re-tracks only what it changes and never lowers Dice."""
    volume, truth = lesion_volume()
    path = server.tmp / "lesion_click.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 5.0, 1.0])), path)
    server.client.upload_image(str(path), "lesion_click")
    key = int(truth.sum((0, 1)).argmax())
    x, y = np.nonzero(truth[..., key])
    roi = [int(x.min()), int(y.min()), int(x.max()), int(y.max()), key, key]
    out, result = server.client.infer(
        "lite_medsam", "lesion_click", {"label": "object", "roi": roi, "interaction": True}
    )
    before = np.asarray(nib.load(out).dataobj) > 0
    cx, cy, _ = error_region_click(np.zeros_like(truth[..., key]), truth[..., key])  # (row i, column j) of a (I, J)
    click = {"action": "correct", "interaction": result["interaction"]["id"], "label": "object"}
    out, result = server.client.infer("lite_medsam", "lesion_click", {**click, "foreground": [[cy, cx, key]]})
    after, changed = np.asarray(nib.load(out).dataobj) > 0, result["interaction"]["changed_slices"]
    assert all(np.array_equal(after[..., k], before[..., k]) for k in range(truth.shape[-1]) if k not in changed)
    assert binary_dice(after, truth) >= binary_dice(before, truth) - 1e-6, (changed, binary_dice(before, truth))
