"""The sam_automed bundle: contract files, verify_metadata / verify_net_in_out, tiny train (MLflow) /
evaluate (with the SAM-Med2D box-prompt comparison) / inference, bad inputs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, error_chain
from PIL import Image

from monaiseg.utils import bundle_run

BUNDLE = REPO / "bundles" / "sam_automed"
CONFIGS = BUNDLE / "configs"
CLASSES = ["organ", "lesion", "vessel"]


def configs(*names: str) -> list[str]:
    return [str(CONFIGS / n) for n in (*names, "tiny.json")]


def run_bundle(names: list[str], **overrides):
    bundle_run.run_bundle(configs(*names), in_process=True, **overrides)


@pytest.fixture(scope="module")
def trained(synthetic_2d, tmp_path_factory) -> Path:
    """One tiny training through the CLI with MLflow tracking; returns the bundle root used."""
    root = tmp_path_factory.mktemp("sam_automed_root")
    proc = bundle_run.run_bundle(
        configs("train.json"), cwd=root, timeout=600, bundle_root=root, dataset_dir=synthetic_2d, tracking="mlflow"
    )
    assert (proc.stdout + proc.stderr).count("train_loss:") == 2
    return root


def test_bundle_specific_contract():
    """What this bundle declares beyond the shared zoo checks (scripts/verify_bundles.py)."""
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {
        "0": "background",
        "1": "organ",
        "2": "lesion",
        "3": "vessel",
    }
    assert "Apache License" in (BUNDLE / "LICENSE").read_text()
    large = (BUNDLE / "large_files.yml").read_text()
    assert "models/sam-med2d_b.pth" in large and "mobilenet_v3_large-8738ca79.pth" in large


@pytest.mark.slow
def test_train_saves_model_and_tracks_mlflow(trained):
    from mlflow import MlflowClient

    from monaiseg.networks.sam_automed import build_sam_automed

    model_file = trained / "models" / "model.pt"
    content = torch.load(model_file, map_location="cpu", weights_only=True)
    assert set(content) == {"model"} and any(k.startswith("prompt_generator.") for k in content["model"])
    build_sam_automed(
        3,
        checkpoint=str(model_file),
        image_size=64,
        backbone="small",
        encoder_depth=2,
        encoder_embed_dim=64,
        encoder_num_heads=2,
    )  # strict load
    client = MlflowClient(tracking_uri=f"sqlite:///{trained / 'eval' / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1
    run = runs[0]
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in losses] == [1, 2] and all(np.isfinite(m.value) for m in losses)
    assert 0.0 <= run.data.metrics["val_mean_dice"] <= 1.0
    assert (
        run.data.params["max_epochs"] == "1" and run.data.params["params_trainable"] != run.data.params["params_total"]
    )
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "model.pt" in artifacts and any(a.startswith("config_") for a in artifacts)


@pytest.mark.slow
def test_evaluate_compares_with_box_prompted_sam_med2d(trained, synthetic_2d, tmp_path):
    out = tmp_path / "eval"
    run_bundle(
        ["train.json", "evaluate.json"], bundle_root=str(trained), dataset_dir=str(synthetic_2d), output_dir=str(out)
    )
    testing = json.loads((synthetic_2d / "datalist.json").read_text())["testing"]
    with open(out / "comparison.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    columns = ["sam_automed_dice", "sam_automed_iou", "sam_med2d_box_dice", "sam_med2d_box_iou"]
    assert list(rows[0]) == ["image", "class", *columns]
    assert len(rows) == 3 * len(testing) and [r["class"] for r in rows[:3]] == CLASSES
    assert all(0.0 <= float(r[c]) <= 1.0 for r in rows for c in columns)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_images"] == len(testing) and summary["classes"] == CLASSES
    with open(out / "metrics.csv") as f:
        monai_metrics = dict(line.strip().split(",") for line in f if line.strip())
    assert summary["sam_automed"]["dice"] == pytest.approx(float(monai_metrics["val_mean_dice"]), abs=1e-5)
    assert summary["sam_automed"]["iou"] == pytest.approx(float(monai_metrics["val_mean_iou"]), abs=1e-5)
    for method in ("sam_automed", "sam_med2d_box"):
        assert set(summary[method]["per_class"]) == set(CLASSES) and summary[method]["seconds_per_image"] > 0
        assert 0.0 <= summary[method]["dice"] <= 1.0
    with open(out / "val_mean_dice_raw.csv") as f:
        assert next(csv.reader(f)) == ["filename", "class0", "class1", "class2", "mean"]


@pytest.mark.slow
def test_inference_png_jpeg_bmp_keep_size_and_label_values(trained, synthetic_2d, tmp_path):
    from monai.bundle import ConfigParser

    data = tmp_path / "data"
    data.mkdir()
    grey = np.asarray(Image.open(synthetic_2d / "images" / "case_000.png"))
    Image.fromarray(grey).save(data / "a.png")
    Image.fromarray(np.stack([grey[:48, :40]] * 3, -1)).save(data / "b.jpg")
    Image.fromarray(grey[:40, :56]).save(data / "c.bmp")
    (data / "datalist.json").write_text(json.dumps({"testing": [{"image": n} for n in ["a.png", "b.jpg", "c.bmp"]]}))
    labels = {"1": "organ", "2": "lesion", "7": "vessel"}
    out = tmp_path / "out"
    overrides = {"bundle_root": str(trained), "dataset_dir": str(data), "output_dir": str(out), "labels": labels}
    run_bundle(["inference.json"], save_overlays=True, **overrides)
    for name, shape in [("a", (64, 64)), ("b", (48, 40)), ("c", (40, 56))]:
        pred = np.asarray(Image.open(out / f"{name}_seg.png"))
        assert pred.shape == shape and pred.dtype == np.uint8 and set(np.unique(pred)) <= {0, 1, 2, 7}
        assert (out / f"{name}_overlay.png").is_file()
    parser = ConfigParser()
    parser.read_config(configs("inference.json"))
    parser.update(overrides)
    item = parser.get_parsed_content("preprocessing")({"image": str(data / "a.png")})
    with torch.no_grad():
        classes = parser.get_parsed_content("network")(item["image"][None]).argmax(1)[0].numpy()
    expected = np.array([0, 1, 2, 7])[classes].T  # MONAI loads PNG x first
    assert np.array_equal(np.asarray(Image.open(out / "a_seg.png")), expected)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["RGBA", "I;16"])
def test_inference_refuses_rgba_and_16_bit_without_outputs(trained, tmp_path, mode):
    image = tmp_path / f"bad_{mode.replace(';', '')}.png"
    rng = np.random.default_rng(0)
    if mode == "RGBA":
        Image.fromarray(rng.integers(0, 255, (32, 32, 4), dtype=np.uint8), "RGBA").save(image)
    else:
        Image.fromarray(rng.integers(0, 60000, (32, 32)).astype(np.uint16)).save(image)
    out = tmp_path / "out"
    with pytest.raises(Exception) as info:
        run_bundle(["inference.json"], bundle_root=str(trained), input_image=str(image), output_dir=str(out))
    message = error_chain(info.value)
    assert str(image) in message and ("4 channels" in message or "bit depth" in message)
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_training_refuses_labels_outside_the_class_list(synthetic_2d, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_2d, data)
    bad = data / json.loads((data / "datalist.json").read_text())["training"][0]["label"]
    label = np.asarray(Image.open(bad)).copy()
    label[:4, :4] = 5
    Image.fromarray(label).save(bad)
    root = tmp_path / "root"
    with pytest.raises(Exception) as info:
        run_bundle(["train.json"], bundle_root=str(root), dataset_dir=str(data))
    message = error_chain(info.value)
    assert str(bad) in message and "mask values [5]" in message
    assert not (root / "models" / "model.pt").exists()


@pytest.mark.slow
def test_missing_foundation_checkpoint_names_the_fix(synthetic_2d, tmp_path):
    missing = tmp_path / "models" / "sam-med2d_b_weights.pth"
    with pytest.raises(Exception) as info:
        run_bundle(
            ["train.json"], bundle_root=str(tmp_path), dataset_dir=str(synthetic_2d), foundation_checkpoint=str(missing)
        )
    message = error_chain(info.value)
    assert f"SAM-Med2D checkpoint {missing} not found" in message
    assert "download_large_files" in message and "extract_sam_med2d_weights" in message
    assert not (tmp_path / "models" / "model.pt").exists()
