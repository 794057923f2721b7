"""The unet_cells baseline bundle: contract checks, train / evaluate / inference on synthetic cells."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO
from PIL import Image

BUNDLE = REPO / "bundles" / "unet_cells"
CONFIGS = BUNDLE / "configs"


def bundle_cli(configs, root, *args):
    cmd = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str([str(CONFIGS / c) for c in [*configs, "tiny.json"]]),
        "--bundle_root",
        str(BUNDLE),
        "--ckpt_dir",
        str(root / "models"),
        "--output_dir",
        str(root / "eval"),
        "--logging_file",
        str(CONFIGS / "logging.conf"),
        *args,
    ]
    proc = subprocess.run(cmd, cwd=BUNDLE, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def test_default_network_size():
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(CONFIGS / "train.json")
    network = parser.get_parsed_content("network_def")
    assert sum(p.numel() for p in network.parameters()) == 25_973_113
    assert network(torch.rand(1, 3, 64, 64)).shape == (1, 2, 64, 64)


@pytest.mark.slow
def test_train_evaluate_infer(synthetic_cells, tmp_path):
    bundle_cli(["train.json"], tmp_path, "--dataset_dir", str(synthetic_cells))
    content = torch.load(tmp_path / "models" / "model.pt", weights_only=True)
    assert set(content) == {"model"}
    bundle_cli(["train.json", "evaluate.json"], tmp_path, "--dataset_dir", str(synthetic_cells))
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    testing = json.loads((synthetic_cells / "datalist.json").read_text())["testing"]
    assert summary["num_images"] == len(testing) and 0 <= summary["val_mean_dice"] <= 1 and summary["fps"] > 0
    assert summary["parameters"]["trainable"] == summary["parameters"]["total"]
    out = tmp_path / "infer"
    image = synthetic_cells / "images" / "smear_000.png"
    bundle_cli(
        ["inference.json"],
        tmp_path,
        "--input_image",
        str(image),
        "--output_dir",
        str(out),
        "--save_overlays",
        "true",
        "--checkpoint",
        str(tmp_path / "models" / "model.pt"),
    )
    pred = np.asarray(Image.open(out / "smear_000_cells.png"))
    assert pred.shape == (128, 128) and set(np.unique(pred)) <= {0, 1}
    assert (out / "smear_000_overlay.png").is_file()
