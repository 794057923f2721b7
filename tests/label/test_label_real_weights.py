"""lite_medsam served with its released weights (not tiny.json) through MONAI Label's own client: the
returned mask lies where the box prompt was. 2D: inside the ROI and Dice >= 0.8 on a drawn ellipse,
one shared WBC image and one DeepLesion slice; 3D (a key-slice ROI carried through a drawn ellipsoid):
every slice holding the object is labelled and the label stops within one slice of the object's ends
(on DeepLesion volumes the carry's IoU stop rule does not find the lesion's ends: docs/monai_label.md).
One server for the module; the shared sets skip when absent."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from conftest import REPO, SHARED
from monailabel.client import MONAILabelClient
from PIL import Image

from monaiseg.label.server import LabelServer, tiny_copy

pytestmark = pytest.mark.slow

WBC = SHARED / "data" / "wbc_cellavision"
DEEPLESION = SHARED / "data" / "deeplesion_ct"
SLACK = 2  # pixels a mask may pass its box by (the letterbox resize back to the image)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_weights")
    bundles = root / "bundles"
    tiny_copy(REPO / "bundles" / "lite_medsam", bundles / "lite_medsam", weights=False)
    (bundles / "lite_medsam" / "configs" / "tiny.json").unlink()  # the released weights, not the tiny network
    with LabelServer(root / "studies", [bundles], ["label_test.json"]) as srv:
        srv.client = MONAILabelClient(srv.url, tmpdir=str(root), client_id="real_weights")
        srv.tmp = root
        yield srv


def ellipse(shape: tuple[int, ...], centre, radii) -> np.ndarray:
    grid = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1


def box_of(mask: np.ndarray) -> list[int]:
    """[i0, j0, i1, j1] of a (rows, columns) mask: i along columns, j along rows (MONAI Label's ROI)."""
    rows, cols = np.nonzero(mask)
    return [int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())]


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a & b).sum()) / float(a.sum() + b.sum())


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
    assert dice(mask, truth) >= 0.8, dice(mask, truth)


def drawn_ellipsoid() -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z) HU volume and its object: an ellipsoid on slices 3..9 of 13."""
    rng = np.random.default_rng(1)
    truth = ellipse((64, 72, 13), (30, 38, 6), (16, 20, 3.6))
    return np.round(20 + 130 * truth + rng.normal(0, 10, truth.shape)).astype(np.int16), truth


def test_3d_key_slice_box_labels_the_object_slices_and_stops_at_its_ends(server):
    volume, truth = drawn_ellipsoid()
    path = server.tmp / "ellipsoid.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 5.0, 1.0])), path)
    holding = np.nonzero(truth.any((0, 1)))[0]
    key = int(truth.sum((0, 1)).argmax())
    xs, ys = np.nonzero(truth[..., key])
    roi = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()), key, key]
    out, result = server.client.infer("lite_medsam", "", {"label": "object", "roi": roi}, file=str(path))
    label = np.asarray(nib.load(out).dataobj) > 0
    labelled = np.nonzero(label.any((0, 1)))[0]
    assert label.shape == truth.shape, (label.shape, result)
    assert set(holding) <= set(labelled), (holding, labelled)
    assert labelled.min() >= holding.min() - 1 and labelled.max() <= holding.max() + 1, (holding, labelled)
    assert outside(label[..., key].T, roi[:4]) == 0
    assert dice(label[..., key], truth[..., key]) >= 0.8
