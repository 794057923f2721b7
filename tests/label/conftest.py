"""The MONAI Label server shared by test_label_server.py and test_label_real_weights.py (one start instead of
two): copies of the bundles with tiny random weights, sam_automed without weights (skipped by the app), and
lite_medsam with its released weights (only its label_test.json is merged into it: overrides are aimed at bundles).
Stopped when the last test of tests/label has run, with nothing left running."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import REPO
from PIL import Image

from monaiseg.data.synthetic_ct import make_synthetic_ct
from monaiseg.label.server import LabelServer, tiny_copy, tiny_overrides


def listening(url: str) -> bool:
    try:
        requests.get(f"{url}/info/", timeout=2)
        return True
    except requests.ConnectionError:
        return False


@contextmanager
def sample_server(root: Path):
    """A server on tiny copies of the bundles and lite_medsam's released weights, with its files under `root`
    (scripts/check_label_server.py starts one too).
    `server.data`: the files uploaded as images "ct", "rgb" (and "broken", a file in the studies folder
    that is no image) and the label `rgb_label.png`;
    `server.bundles`, `server.studies`: the served bundles' folder and the datastore."""
    import nibabel as nib

    bundles = root / "bundles"
    tiny_copy(REPO / "bundles" / "medsam2", bundles / "medsam2", {"image_size": 64})
    for name in ("sam_med2d", "medsam", "sam_medcls", "unet_cells"):
        tiny_copy(REPO / "bundles" / name, bundles / name)
    tiny_copy(REPO / "bundles" / "sam_automed", bundles / "sam_automed", weights=False)
    tiny_copy(REPO / "bundles" / "lite_medsam", bundles / "lite_medsam", weights=False)
    data = root / "data"
    data.mkdir()
    image, label = make_synthetic_ct((32, 40, 6), seed=3)
    affine = np.diag([0.8, 0.7, 2.5, 1.0])
    nib.save(nib.Nifti1Image(image.astype(np.int16), affine), data / "ct.nii.gz")
    rng = np.random.default_rng(0)
    rgb = (rng.random((48, 40, 3)) * 255).astype(np.uint8)  # rows 48, columns 40: (I, J) = (40, 48)
    Image.fromarray(rgb).save(data / "rgb.png")
    cells = np.zeros((48, 40), np.uint8)
    cells[10:20, 5:15] = 1
    cells[30:40, 20:32] = 1
    Image.fromarray(cells).save(data / "rgb_label.png")
    (data / "broken.png").write_bytes(b"not a png")
    studies = root / "studies"
    studies.mkdir()
    (studies / "broken.png").write_bytes(b"not a png")  # put there by hand: an upload of it is refused
    with LabelServer(studies, [bundles], overrides=tiny_overrides(bundles)) as srv:
        srv.upload("ct", data / "ct.nii.gz")
        srv.upload("rgb", data / "rgb.png")
        srv.data, srv.bundles, srv.studies = data, bundles, studies
        yield srv


@pytest.fixture(scope="package")
def shared_server(tmp_path_factory):
    """`sample_server`, shared by the package's tests."""
    with sample_server(tmp_path_factory.mktemp("label")) as srv:
        yield srv
    assert srv.process.poll() is not None
    assert not listening(srv.url)
