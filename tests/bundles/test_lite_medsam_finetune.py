"""lite_medsam fine-tuning on real images (configs/finetune_cpu.json): the direction of a short fine-tune of the
official weights through train.json then evaluate.json, and a fine-tune whose training split is empty.

The direction test takes 4 training and 3 test images of the shared WBC sample (the whole cell, where zero-shot is
already high), 2 iterations of 2 images with the recipe's modules, learning rate and jitter: the test Dice must not
fall below zero-shot - 0.02. The full runs are scripts/real_data_lite_medsam.py's job (bundle docs)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, SHARED, error_chain

from monaiseg.utils import bundle_run

BUNDLE = REPO / "bundles" / "lite_medsam"
CONFIGS = BUNDLE / "configs"
WBC = SHARED / "data" / "wbc_cellavision"
TRAIN = ["train.json", "images_2d.json", "finetune_cpu.json"]
EVALUATE = ["train.json", "evaluate.json", "images_2d.json"]


def run_bundle(names: list[str], extra: list[Path] = (), **overrides) -> None:
    files = [str(CONFIGS / n) for n in names] + [str(p) for p in extra]
    bundle_run.run_bundle(files, in_process=True, **overrides)


def wbc_whole_cell_set(root: Path, training: list[str], testing: list[str]) -> Path:
    """Datalist of WBC images (`NNN`) with 0/1 whole-cell label maps (mask > 0) written under `root`."""
    splits = {}
    for split, ids in (("training", training), ("validation", testing[:1]), ("testing", testing)):
        splits[split] = []
        for case in ids:
            label = root / "labels" / f"{case}.png"
            label.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(
                str(label), (cv2.imread(str(WBC / f"{case}.png"), cv2.IMREAD_GRAYSCALE) > 0).astype("uint8")
            )
            splits[split].append({"image": str(WBC / f"{case}.bmp"), "label": f"labels/{case}.png"})
    (root / "datalist.json").write_text(json.dumps(splits))
    return root / "datalist.json"


@pytest.mark.slow
@pytest.mark.skipif(not WBC.is_dir(), reason=f"shared sample data absent ({WBC})")
def test_short_fine_tune_does_not_make_the_official_model_worse(tmp_path):
    datalist = wbc_whole_cell_set(tmp_path / "data", ["001", "002", "003", "004"], ["097", "098", "099"])
    data = tmp_path / "data.json"
    data.write_text(
        json.dumps({"dataset_dir": str(datalist.parent), "datalist": str(datalist), "labels": {"1": "whole cell"}})
    )
    common = {"bundle_root": str(tmp_path / "run"), "num_workers": 0, "overlay_interval": 0}
    run_bundle(EVALUATE, [data], output_dir=str(tmp_path / "zero_shot"), checkpoint="default", **common)
    run_bundle(TRAIN, [data], epoch_length=2, batch_size=2, **common)
    run_bundle(EVALUATE, [data], output_dir=str(tmp_path / "tuned"), **common)
    before, after = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("zero_shot", "tuned"))
    assert before["num_cases"] == after["num_cases"] == 3
    assert before["val_mean_dice"] > 0.9  # the official weights, not a random model
    assert after["val_mean_dice"] >= before["val_mean_dice"] - 0.02, (before["val_mean_dice"], after["val_mean_dice"])


def test_fine_tune_with_an_empty_training_split_is_one_error_and_writes_nothing(tmp_path):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    assert cv2.imwrite(str(data / "images" / "a.png"), np.full((32, 32, 3), 90, np.uint8))
    (data / "datalist.json").write_text(
        json.dumps({"training": [], "validation": [{"image": "images/a.png", "label": "images/a.png"}]})
    )
    root = tmp_path / "run"
    root.mkdir()
    with pytest.raises(Exception) as info:
        run_bundle(
            ["train.json", "tiny.json", "images_2d.json", "finetune_cpu.json"],
            bundle_root=str(root),
            dataset_dir=str(data),
        )
    message = error_chain(info.value)
    assert f"{data / 'datalist.json'}: the 'training' split of the datalist is empty" in message
    assert list(root.iterdir()) == []  # no models/, no eval/, no resume checkpoint
