"""The unet_cells baseline bundle: contract checks, train / evaluate / inference on synthetic cells."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image

from monaiseg.utils.bundle_run import run_bundle

BUNDLE = REPO / "bundles" / "unet_cells"
CONFIGS = BUNDLE / "configs"


def run(configs: list[str], root: Path, **overrides) -> None:
    """The bundle's workflow in this process with the tiny override, models/eval under `root`."""
    files = [CONFIGS / c for c in [*configs, "tiny.json"]]
    paths = {"bundle_root": BUNDLE, "ckpt_dir": root / "models", "output_dir": root / "eval"}
    run_bundle(files, in_process=True, **{**paths, **overrides})


def test_default_network_size():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(CONFIGS / "train.json")
    network = parser.get_parsed_content("network_def")
    assert sum(p.numel() for p in network.parameters()) == 25_973_113
    assert network(torch.rand(1, 3, 64, 64)).shape == (1, 2, 64, 64)


@pytest.mark.slow
def test_train_evaluate_infer(synthetic_cells, tmp_path):
    run(["train.json"], tmp_path, dataset_dir=synthetic_cells)
    content = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert set(content) == {"model"}
    run(["train.json", "evaluate.json"], tmp_path, dataset_dir=synthetic_cells)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    testing = json.loads((synthetic_cells / "datalist.json").read_text())["testing"]
    assert summary["num_images"] == len(testing) and 0 <= summary["val_mean_dice"] <= 1 and summary["fps"] > 0
    assert summary["parameters"]["trainable"] == summary["parameters"]["total"]
    out = tmp_path / "infer"
    image = synthetic_cells / "images" / "smear_000.png"
    checkpoint = tmp_path / "models" / "model.pt"
    run(["inference.json"], tmp_path, input_image=image, output_dir=out, save_overlays="true", checkpoint=checkpoint)
    pred = np.asarray(Image.open(out / "smear_000_cells.png"))
    assert pred.shape == (128, 128) and set(np.unique(pred)) <= {0, 1}
    assert (out / "smear_000_overlay.png").is_file()
