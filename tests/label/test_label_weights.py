"""Truthful weights (issue 26, item 8): overrides are aimed at bundles, /info and the start-up log say per
model what it runs on, and a random-init network is served only when asked for.

The `case_*` functions take the running shared server (scripts/check_label_server.py runs them too)."""

from __future__ import annotations

import hashlib
import io
import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from conftest import REPO
from PIL import Image

from monaiseg.label.bundles import parse_overrides, read_bundle, weights_sha256, weights_source
from monaiseg.label.runtime import BundleRuntime
from monaiseg.label.server import tiny_copy
from monaiseg.networks.lite_medsam import LITE_MEDSAM_SHA256

RELEASED = {"source": "released", "file": "lite_medsam.pth", "sha256": LITE_MEDSAM_SHA256}


def case_info_and_log_say_what_each_model_runs_on(server) -> None:
    models = requests.get(f"{server.url}/info/", timeout=60).json()["models"]
    assert models["lite_medsam"]["weights"] == RELEASED
    trained = server.bundles / "unet_cells" / "models" / "model.pt"
    assert models["unet_cells"]["weights"] == {
        "source": "trained",
        "file": "models/model.pt",  # no server path in /info
        "sha256": hashlib.sha256(trained.read_bytes()).hexdigest(),
    }
    log = server.log.read_text()
    assert f"bundle lite_medsam serves released weights lite_medsam.pth (sha256 {LITE_MEDSAM_SHA256})" in log
    assert "bundle unet_cells serves trained weights" in log and "serves RANDOM" not in log


@pytest.mark.slow
def test_shared_server_weights(shared_server):
    case_info_and_log_say_what_each_model_runs_on(shared_server)


def case_concurrent_real_weights(server, clients: int = 4, per_client: int = 10) -> None:
    """`clients` threads x `per_client` lite_medsam (released weights) box requests on one image: no error,
    every label byte-identical to a sequential request's."""
    rng = np.random.default_rng(0)
    rows, cols = np.ogrid[:120, :160]
    truth = ((rows - 58) / 30) ** 2 + ((cols - 70) / 45) ** 2 <= 1
    image = np.clip(60 + 120 * truth + rng.normal(0, 12, truth.shape), 0, 255).astype(np.uint8)
    path = server.studies.parent / "ellipse.png"
    Image.fromarray(image).save(path)
    server.upload("ellipse", path)
    params = {"label": "object", "roi": [25, 28, 115, 88]}
    status, result, reference = server.infer("lite_medsam", "ellipse", params)
    assert status == 200 and reference, result
    mask = np.asarray(Image.open(io.BytesIO(reference))) > 0
    assert (mask & truth).sum() > 0.8 * truth.sum()  # the released weights segment the ellipse

    def client(_: int) -> list:
        return [server.infer("lite_medsam", "ellipse", params) for _ in range(per_client)]

    with ThreadPoolExecutor(clients) as pool:
        answers = [a for batch in pool.map(client, range(clients)) for a in batch]
    errors = [(s, r) for s, r, _ in answers if s != 200]
    assert not errors, errors[:3]
    assert all(label == reference for _, _, label in answers), "a concurrent label differs from the sequential one"
    assert len(answers) == clients * per_client


@pytest.mark.slow
def test_concurrent_real_weight_requests_are_identical(shared_server):
    case_concurrent_real_weights(shared_server, clients=2, per_client=2)


def test_overrides_are_aimed_at_bundles():
    served = {"lite_medsam": read_bundle(REPO / "bundles" / "lite_medsam")}
    assert parse_overrides(["lite_medsam:tiny.json,images_2d.json"], served) == {
        "lite_medsam": ["tiny.json", "images_2d.json"]
    }
    for spec, words in [
        ("tiny.json", "aim it at a bundle"),
        ("medsam2:tiny.json", "not served"),
        ("lite_medsam:../../x.json", "not a config file name"),
        ("lite_medsam:/etc/passwd", "not a config file name"),
        ("lite_medsam:nosuch.json", "not found"),
    ]:
        with pytest.raises(ValueError, match=words):
            parse_overrides([spec], served)


def test_weights_source_of_released_random_and_trained(tmp_path):
    info = read_bundle(REPO / "bundles" / "lite_medsam")
    assert weights_source(info, BundleRuntime(info).config()) == RELEASED
    assert weights_source(info, BundleRuntime(info, ["tiny.json"]).config()) == {"source": "random"}
    copy = read_bundle(tiny_copy(REPO / "bundles" / "lite_medsam", tmp_path / "lite_medsam"))
    assert weights_source(copy, BundleRuntime(copy, ["tiny.json"]).config()) == {
        "source": "trained",
        "file": "models/model.pt",
        "sha256": hashlib.sha256(copy.weights.read_bytes()).hexdigest(),
    }
    copy.weights.write_bytes(copy.weights.read_bytes() + b"retrained")  # a new version is hashed again
    assert weights_sha256(copy.weights) == hashlib.sha256(copy.weights.read_bytes()).hexdigest()


def test_random_init_is_served_only_when_asked_for(tmp_path, caplog):
    from monaiseg.label.main import MonaisegApp

    tiny_copy(REPO / "bundles" / "lite_medsam", tmp_path / "b" / "lite_medsam", weights=False)
    (tmp_path / "app").mkdir()
    (tmp_path / "s").mkdir()
    conf = {"bundles": str(tmp_path / "b"), "overrides": "lite_medsam:tiny.json"}
    with caplog.at_level(logging.INFO, logger="monaiseg.label.main"):
        app = MonaisegApp(str(tmp_path / "app"), str(tmp_path / "s"), conf)
        assert "lite_medsam" not in app.runtimes and "--random-init" in app.skipped["lite_medsam"]
        app = MonaisegApp(str(tmp_path / "app"), str(tmp_path / "s"), {**conf, "random_init": "lite_medsam"})
    assert app.info()["models"]["lite_medsam"]["weights"] == {"source": "random"}
    assert "bundle lite_medsam serves RANDOM initialisation" in caplog.text
    conf = {"bundles": str(tmp_path / "b"), "overrides": "tiny.json"}  # not aimed: the start stops
    with pytest.raises(ValueError, match="aim it at a bundle"):
        MonaisegApp(str(tmp_path / "app"), str(tmp_path / "s"), conf)
