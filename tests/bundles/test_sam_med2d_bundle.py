"""The sam_med2d bundle: contract checks, click-simulation training (MLflow tracked), per-prompt-mode
evaluation, prompted inference from JSON sidecars, bad input, wrong checkpoint, two processes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, error_chain
from PIL import Image

from monaiseg.utils import bundle_run

BUNDLE = REPO / "bundles" / "sam_med2d"
CONFIGS = BUNDLE / "configs"
MODES = ["box", "points_1", "points_3", "points_5"]


def run_bundle(configs: list[str], root: Path, **overrides) -> None:
    """The workflow in this process with the tiny override, models/eval under `root`."""
    files = [str(CONFIGS / c) for c in [*configs, "tiny.json"]]
    overrides = {"ckpt_dir": str(root / "models"), "output_dir": str(root / "eval"), **overrides}
    bundle_run.run_bundle(files, bundle_root=str(BUNDLE), in_process=True, **overrides)


def parse(configs: list[str], **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(CONFIGS / c) for c in configs])
    parser.update({"bundle_root": str(BUNDLE), **overrides})
    return parser


@pytest.fixture(scope="module")
def trained(synthetic_2d, tmp_path_factory):
    """Tiny click-simulation training on the synthetic scans, tracked in MLflow; returns the root."""
    root = tmp_path_factory.mktemp("sam_med2d")
    run_bundle(
        ["train.json"],
        root,
        dataset_dir=str(synthetic_2d),
        tracking="mlflow",
        tracking_uri=f"sqlite:///{root}/mlflow.db",
    )
    return root


def sidecar(path: Path, objects: list[dict]) -> Path:
    path.write_text(json.dumps({"objects": objects}))
    return path


def test_bundle_specific_contract():
    """What this bundle declares beyond the shared zoo checks (scripts/verify_bundles.py)."""
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert set(meta["network_data_format"]["inputs"]) == {"image"} and set(meta["network_data_format"]["outputs"]) == {
        "pred"
    }
    assert "models/sam-med2d_b.pth" in (BUNDLE / "large_files.yml").read_text()


def test_default_network_is_sam_med2d_vit_b_256():
    from monaiseg.networks import parameter_report

    parser = parse(["train.json"], checkpoint=None, device="meta")
    parser["network_def"]["device"] = "meta"
    network = parser.get_parsed_content("network")
    report = parameter_report(network)
    # sam_med2d_vit_b.json: 271,242,032 tensor elements incl. the 256-element PE buffer
    assert report["total"] == 271_242_032 - 256
    adapters = sum(p.numel() for n, p in network.named_parameters() if ".Adapter." in n)
    assert adapters == 180_504_576 and all(hasattr(b, "Adapter") for b in network.image_encoder.blocks)
    frozen = [n for n, p in network.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("image_encoder.") and ".Adapter." not in n for n in frozen)
    assert report["trainable"] == adapters + sum(
        p.numel() for n, p in network.named_parameters() if n.startswith(("prompt_encoder.", "mask_decoder."))
    )


@pytest.mark.slow
def test_training_updates_adapters_and_decoder_only(trained):
    from monai.utils import set_determinism

    set_determinism(seed=0)
    initial = parse(["train.json", "tiny.json"], checkpoint=None).get_parsed_content("network_def").state_dict()
    content = torch.load(trained / "models" / "model.pt", weights_only=True)
    assert set(content) == {"model"} and set(content["model"]) == set(initial)
    final = content["model"]
    changed = {k for k in final if not torch.equal(final[k], initial[k])}
    assert any(".Adapter." in k for k in changed) and any(k.startswith("mask_decoder.") for k in changed)
    assert not any(k.startswith("image_encoder.") and ".Adapter." not in k for k in changed)


@pytest.mark.slow
def test_training_is_tracked_in_mlflow(trained):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{trained}/mlflow.db")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert runs
    run = runs[0]
    assert 0 < float(run.data.params["params_trainable_percent"]) < 100
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
    assert {"val_mean_dice", "val_mean_iou"} <= set(run.data.metrics)
    assert "model.pt" in {a.path for a in client.list_artifacts(run.info.run_id)}


@pytest.mark.slow
def test_evaluate_writes_one_table_per_prompt_mode(trained, synthetic_2d):
    run_bundle(["train.json", "evaluate.json"], trained, dataset_dir=str(synthetic_2d))
    summary = json.loads((trained / "eval" / "summary.json").read_text())
    testing = json.loads((synthetic_2d / "datalist.json").read_text())["testing"]
    assert list(summary["table"]) == MODES and summary["num_images"] == len(testing)
    assert summary["parameters"]["total"] > summary["parameters"]["trainable"] > 0
    for mode in MODES:
        assert set(summary["table"][mode]) == {"dice", "iou"}
        assert 0 <= summary["table"][mode]["iou"] <= summary["table"][mode]["dice"] <= 1
        with open(trained / "eval" / f"{mode}.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert list(rows[0]) == ["image", "class", "dice", "iou"]
        assert {r["class"] for r in rows} == {"organ", "lesion", "vessel"}  # every synthetic scan has all three
        assert len(rows) == 3 * len(testing)
    run_bundle(
        ["train.json", "evaluate.json"], trained, dataset_dir=str(synthetic_2d), output_dir=str(trained / "eval2")
    )
    again = json.loads((trained / "eval2" / "summary.json").read_text())
    assert again["table"] == summary["table"]  # clicks drawn with a fixed seed


@pytest.mark.slow
def test_inference_from_sidecar_keeps_size_and_object_values(trained, tmp_path):
    rng = np.random.default_rng(0)
    image = tmp_path / "scan.png"  # 48 rows x 80 columns, RGB
    Image.fromarray(rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)).save(image)
    sidecar(
        tmp_path / "scan.json",
        [{"label": 3, "box": [5, 5, 40, 30]}, {"label": 9, "points": [[70, 40], [60, 10]], "point_labels": [1, 0]}],
    )
    out = tmp_path / "out"
    run_bundle(
        ["inference.json"],
        trained,
        input_image=str(image),
        output_dir=str(out),
        save_overlays=True,
        checkpoint=str(trained / "models" / "model.pt"),
    )
    pred = np.asarray(Image.open(out / "scan_seg.png"))
    assert pred.shape == (48, 80) and pred.dtype == np.uint8 and set(np.unique(pred)) <= {0, 3, 9}
    assert (out / "scan_overlay.png").is_file()


def test_network_sees_rows_by_columns_and_16bit_grey_is_scaled(tmp_path):
    image = tmp_path / "wide.png"
    pixels = (np.arange(12 * 20).reshape(12, 20) * 200).astype(np.uint16)
    Image.fromarray(pixels).save(image)
    preprocessing = parse(["inference.json"]).get_parsed_content("preprocessing")
    tensor = preprocessing({"image": str(image)})["image"]
    assert tensor.shape == (1, 12, 20)  # (C, H, W): prompts' x is the last axis, y the rows
    expected = (pixels - pixels.min()) / (pixels.max() - pixels.min())
    assert np.allclose(tensor[0].numpy(), expected, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["rgba", "box_outside", "point_outside", "no_sidecar", "bad_json"])
def test_bad_inputs_fail_naming_the_file_without_outputs(trained, tmp_path, case):
    image = tmp_path / "scan.png"
    channels = (32, 32, 4) if case == "rgba" else (32, 32)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, channels, dtype=np.uint8)).save(image)
    prompt = sidecar(tmp_path / "scan.json", [{"label": 1, "box": [2, 2, 20, 20]}])
    expected = {
        "rgba": (image, "4 channels"),
        "box_outside": (prompt, "outside the 32x32 image"),
        "point_outside": (prompt, "outside the 32x32 image"),
        "no_sidecar": (prompt, "not found"),
        "bad_json": (prompt, "not a JSON object"),
    }[case]
    if case == "box_outside":
        sidecar(prompt, [{"label": 1, "box": [2, 2, 40, 20]}])
    elif case == "point_outside":
        sidecar(prompt, [{"label": 1, "points": [[5, 32]]}])
    elif case == "no_sidecar":
        prompt.unlink()
    elif case == "bad_json":
        prompt.write_text("{'objects': ")
    out = tmp_path / "out"
    with pytest.raises(Exception) as info:
        run_bundle(
            ["inference.json"],
            trained,
            input_image=str(image),
            output_dir=str(out),
            checkpoint=str(trained / "models" / "model.pt"),
        )
    message = error_chain(info.value)
    assert str(expected[0]) in message and expected[1] in message
    assert not out.exists() or not any(out.iterdir())


def test_sam_checkpoint_is_refused_naming_adapters_and_model(tmp_path):
    from monaiseg.networks import build_sam_segmenter

    sam = build_sam_segmenter(
        "vit_b", 64, None, encoder_adapter=False, encoder_depth=2, encoder_embed_dim=64, encoder_num_heads=2
    )
    path = tmp_path / "sam_tiny.pth"
    torch.save({"model": sam.state_dict()}, path)
    with pytest.raises(Exception) as info:
        parse(["inference.json", "tiny.json"], checkpoint=str(path)).get_parsed_content("network_def")
    message = error_chain(info.value)
    assert str(path) in message and "image_encoder.blocks.0.Adapter.norm.weight" in message
    assert "SAM-Med2D" in message and "encoder_adapter" in message
