"""The MONAI Label server (`monaiseg label serve`) over HTTP: one real server (shared with
test_label_real_weights.py, tests/label/conftest.py), on copies of the bundles with tiny random weights;
stopped at the end with nothing left running."""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor

import nibabel as nib
import numpy as np
import pytest
import requests
from PIL import Image

pytestmark = pytest.mark.slow


@pytest.fixture
def server(shared_server):
    """The package's shared server (tests/label/conftest.py)."""
    return shared_server


def _nifti(content: bytes) -> nib.Nifti1Image:
    return nib.Nifti1Image.from_bytes(__import__("gzip").decompress(content))


def test_info_lists_bundles_with_types_and_labels(server):
    info = requests.get(f"{server.url}/info/").json()
    models = info["models"]
    assert set(models) == {"medsam2", "sam_med2d", "medsam", "sam_medcls", "unet_cells", "lite_medsam"}
    assert models["medsam2"]["type"] == "deepgrow" and models["medsam2"]["dimension"] == 3
    assert models["medsam2"]["labels"]["spleen"] == 3
    assert models["sam_med2d"]["type"] == "deepgrow" and models["sam_med2d"]["dimension"] == 2
    assert models["unet_cells"]["type"] == "segmentation" and models["unet_cells"]["labels"] == {"cell": 1}
    assert models["sam_medcls"]["type"] == "classification" and models["sam_medcls"]["labels"][0] == "neutrophil"
    assert "model.pt" in info["skipped"]["sam_automed"]
    assert set(info["trainers"]) == set(models)


def test_medsam2_slicer_points_and_roi_several_objects(server):
    params = {
        "objects": [
            {"label": "spleen", "foreground": [[10, 12, 2], [11, 14, 2]], "background": [[2, 2, 2]]},
            {"label": "liver", "roi": [14, 8, 26, 30, 3, 5]},
        ]
    }
    status, result, label = server.infer("medsam2", "ct", params)
    assert status == 200, result
    out, ref = _nifti(label), nib.load(server.data / "ct.nii.gz")
    assert out.shape == ref.shape and np.allclose(out.affine, ref.affine)
    assert set(np.unique(np.asarray(out.dataobj))) <= {0, 1, 3}
    assert result["labels"] == {"spleen": 3, "liver": 1}
    assert all(0 <= k < 6 for k in result["slices"])


def test_sam_med2d_slicer_and_ohif_conventions_agree(server):
    slicer = {"foreground": [[12, 20, 0]], "background": [[30, 40, 0]], "roi": [5, 10, 25, 30]}
    ohif = {"foreground": [[12, 20]], "background": [[30, 40]], "roi": [5, 10, 25, 30], "slice": 0}
    s1, r1, l1 = server.infer("sam_med2d", "rgb", slicer)
    s2, r2, l2 = server.infer("sam_med2d", "rgb", ohif)
    assert s1 == s2 == 200, (r1, r2)
    a, b = np.asarray(Image.open(io.BytesIO(l1))), np.asarray(Image.open(io.BytesIO(l2)))
    assert a.shape == (48, 40) and np.array_equal(a, b)  # same geometry as the input PNG (rows, columns)
    assert set(np.unique(a)) <= {0, 1} and r1["labels"] == {"object": 1}


def test_medsam_box_on_2d_image(server):
    status, result, label = server.infer("medsam", "rgb", {"roi": [5, 10, 25, 30], "label": "liver"})
    assert status == 200, result
    a = np.asarray(Image.open(io.BytesIO(label)))
    assert a.shape == (48, 40) and set(np.unique(a)) <= {0, 1}


def test_classification_returns_class_scores(server):
    status, result, label = server.infer("sam_medcls", "rgb")
    assert status == 200 and label is None
    scores = result["scores"]
    assert list(scores) == ["neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil"]
    assert abs(sum(scores.values()) - 1) < 1e-5 and result["prediction"] == max(scores, key=scores.get)


@pytest.mark.parametrize(
    "model, image, params, status, words",
    [
        ("nosuch", "rgb", {}, 404, "unknown model"),
        ("sam_automed", "rgb", {}, 404, "model.pt"),
        ("sam_med2d", "rgb", {"foreground": [[40, 5]]}, 400, "outside the image"),
        ("medsam2", "ct", {"foreground": [[3, 3, 10]]}, 400, "outside the image"),
        ("medsam2", "rgb", {"foreground": [[3, 3]]}, 400, "is 2D"),
        ("sam_med2d", "broken", {"foreground": [[3, 3]]}, 400, "cannot be read"),
        ("sam_med2d", "rgb", {}, 400, "no prompt"),
        ("medsam", "rgb", {"background": [[3, 3]]}, 400, "foreground click"),
        ("sam_med2d", "missing", {"foreground": [[3, 3]]}, 404, "not in the datastore"),
    ],
)
def test_bad_requests_get_4xx_and_change_nothing(server, model, image, params, status, words):
    before = sorted(
        p.relative_to(server.studies).as_posix()
        for p in server.studies.rglob("*")
        if ".monaiseg-label-app" not in p.parts
    )
    code, result, label = server.infer(model, image, params)
    assert code == status and words in result["detail"], result
    assert str(server.studies.parent) not in result["detail"], result  # names files, not the server's paths
    after = sorted(
        p.relative_to(server.studies).as_posix()
        for p in server.studies.rglob("*")
        if ".monaiseg-label-app" not in p.parts
    )
    assert after == before
    assert requests.get(f"{server.url}/info/").status_code == 200  # still serving


def test_concurrent_requests_equal_sequential(server):
    jobs = [("sam_med2d", "rgb", {"foreground": [[12 + n, 20, 0]], "roi": [5, 10, 25 + n, 30]}) for n in range(3)]
    jobs.append(("unet_cells", "rgb", {}))
    sequential = [hashlib.sha256(server.infer(*job)[2]).hexdigest() for job in jobs]
    with ThreadPoolExecutor(4) as pool:
        concurrent = [hashlib.sha256(r[2]).hexdigest() for r in pool.map(lambda job: server.infer(*job), jobs * 2)]
    assert concurrent == sequential * 2


def test_train_from_server_updates_weights_used_by_infer(server, tmp_path):
    server.upload_label("rgb", server.data / "rgb_label.png")
    weights = server.bundles / "unet_cells" / "models" / "model.pt"
    before = hashlib.sha256(weights.read_bytes()).hexdigest()
    _, result_before, _ = server.infer("unet_cells", "rgb")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    r = requests.post(
        f"{server.url}/train/unet_cells",
        params={"run_sync": True},
        json={"tiny": True, "max_epochs": 1, "tracking": "mlflow", "tracking_uri": uri},
        timeout=600,
    )
    assert r.status_code == 200, r.text
    assert r.json()["images"] == 1
    assert hashlib.sha256(weights.read_bytes()).hexdigest() != before
    assert (tmp_path / "mlflow.db").is_file()
    status, result, label_after = server.infer("unet_cells", "rgb")
    assert status == 200 and np.asarray(Image.open(io.BytesIO(label_after))).shape == (48, 40)
    assert result["weights_version"] == weights.stat().st_mtime_ns != result_before["weights_version"]
