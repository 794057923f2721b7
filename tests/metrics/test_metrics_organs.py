"""Dice / HD95 per organ per case: hand-computed values, spacing, empty-organ conventions, table files."""

from __future__ import annotations

import csv
import json
import math
import warnings

import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.metrics import DiceMetric, HausdorffDistanceMetric

from monaiseg.metrics.organs import OrganMetrics, organ_scores, organ_table


def shifted_squares(shape=(10, 10)):
    """GT: 4x4 square at rows/cols 2-5; prediction: the same square 2 columns to the right."""
    gt, pred = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    gt[2:6, 2:6] = 1
    pred[2:6, 4:8] = 1
    return pred, gt


def test_2d_hand_computed_dice_and_hd95_with_spacing():
    # Dice = 2 * 8 / (16 + 16). Edge-to-edge distances of the 12 border pixels, either direction:
    # unit spacing {0 x4, 1 x4, 2 x4} -> 95th percentile 2; spacing (0.5, 1.5) mm:
    # {0 x4, 0.5 x2, 1.5 x2, 3 x4} -> 3 mm
    pred, gt = shifted_squares()
    assert organ_scores(pred, gt, [1])[1] == pytest.approx({"dice": 0.5, "hd95": 2.0})
    assert organ_scores(pred, gt, [1], spacing=(0.5, 1.5))[1] == pytest.approx({"dice": 0.5, "hd95": 3.0})


def test_3d_hand_computed_and_spacing_from_metatensor():
    # two-voxel objects sharing one voxel, the other 3 voxels apart along y (2 mm voxels): distances
    # pred->gt {0, 6}, gt->pred {0, 2} mm; MONAI: max(p95{0, 6}, p95{0, 2}) = 5.7
    # (medpy's pooled p95 of {0, 0, 2, 6} would be 5.4)
    gt, pred = np.zeros((8, 8, 8), np.uint8), np.zeros((8, 8, 8), np.uint8)
    gt[2, 2, 2] = gt[2, 3, 2] = 4
    pred[2, 2, 2] = pred[2, 6, 2] = 4
    scores = organ_scores(pred, gt, [4], spacing=(1, 2, 3))
    assert scores[4] == pytest.approx({"dice": 0.5, "hd95": 5.7}, abs=1e-5)
    meta = MetaTensor(torch.as_tensor(gt)[None], affine=torch.diag(torch.tensor([1.0, 2.0, 3.0, 1.0])))
    assert organ_scores(torch.as_tensor(pred)[None], meta, [4]) == scores  # (1, X, Y, Z) and affine spacing


def empty_cases():
    """Organ 1 in both, 2 only predicted, 3 only in GT, 4 in neither."""
    pred, gt = shifted_squares((12, 12))
    pred[10, 10] = 2
    gt[0, 10] = 3
    return pred, gt


def test_upstream_empty_convention():
    pred, gt = empty_cases()
    scores = organ_scores(pred, gt, [1, 2, 3, 4])
    assert {k: (v["dice"], v["hd95"]) for k, v in scores.items() if k != 1} == {2: (1, 0), 3: (0, 0), 4: (0, 0)}


def test_monai_empty_convention_matches_monai_metrics():
    pred, gt = empty_cases()
    scores = organ_scores(pred, gt, [1, 2, 3, 4], empty="monai")
    onehot = lambda x: torch.stack([torch.as_tensor(x == v) for v in (1, 2, 3, 4)])[None].float()  # noqa: E731
    dice = DiceMetric(include_background=True, reduction="none")(onehot(pred), onehot(gt))[0]
    with pytest.warns(UserWarning):
        hd = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")(
            onehot(pred), onehot(gt)
        )[0]
    for i, v in enumerate((1, 2, 3, 4)):
        for ours, theirs in ((scores[v]["dice"], float(dice[i])), (scores[v]["hd95"], float(hd[i]))):
            assert (math.isnan(ours) and math.isnan(theirs)) or ours == pytest.approx(theirs)


def test_accumulator_means_csv_json_and_table(tmp_path):
    labels = {"0": "background", "1": "left kidney", "2": "liver"}
    metrics = OrganMetrics(labels)
    pred, gt = shifted_squares()
    metrics.add("case0001", pred, gt)  # kidney 0.5 / 2; liver absent from both -> 0 / 0 (upstream)
    both = gt.copy()
    both[7:9, 7:9] = 2
    metrics.add("case0002", both, both)  # 1 / 0 for both organs
    summary = metrics.summary()
    assert summary["organs"]["left kidney"] == pytest.approx({"label": 1, "dice": 0.75, "hd95": 1.0})
    assert summary["organs"]["liver"] == pytest.approx({"label": 2, "dice": 0.5, "hd95": 0.0})
    assert summary["mean"] == pytest.approx({"dice": 0.625, "hd95": 0.5}) and summary["cases"] == 2
    csv_path, json_path = metrics.write(tmp_path / "eval")
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["case"] for r in rows] == ["case0001", "case0002"]
    assert float(rows[0]["dice_left_kidney"]) == 0.5 and float(rows[0]["hd95_left_kidney"]) == pytest.approx(2)
    assert float(rows[0]["dice"]) == 0.25 and float(rows[1]["dice"]) == 1
    saved = json.loads(json_path.read_text())
    assert saved["mean"] == pytest.approx(summary["mean"]) and len(saved["per_case"]) == 2
    assert not list((tmp_path / "eval").glob(".tmp-*"))
    table = organ_table(summary, organs=["liver", "left kidney"], method="HF-SAM (tiny)")
    assert table.splitlines()[0] == "| Method | DSC (%) | HD95 | liver | left kidney |"
    assert table.splitlines()[2] == "| HF-SAM (tiny) | 62.50 | 0.50 | 50.00 | 75.00 |"


def test_monai_convention_leaves_nan_out_of_means():
    metrics = OrganMetrics({1: "a", 2: "b"}, empty="monai")
    pred, gt = shifted_squares()
    metrics.add("x", pred, gt)  # b absent from both: NaN
    both = gt.copy()
    both[7:9, 7:9] = 2
    metrics.add("y", both, both)
    summary = metrics.summary()
    assert summary["organs"]["b"] == pytest.approx({"label": 2, "dice": 1.0, "hd95": 0.0})
    assert summary["mean"] == pytest.approx({"dice": 0.875, "hd95": 0.5})


def test_bad_input():
    metrics = OrganMetrics({1: "a"})
    with pytest.raises(ValueError, match="no case scored"):
        metrics.summary()
    pred, gt = shifted_squares()
    with pytest.raises(ValueError, match=r"prediction shape \(10, 9\) differs from ground truth shape \(10, 10\)"):
        metrics.add("x", pred[:, :9], gt)
    metrics.add("x", pred, gt)
    with pytest.raises(ValueError, match="already scored"):
        metrics.add("x", pred, gt)
    with pytest.raises(ValueError, match="spacing"):
        organ_scores(pred, gt, [1], spacing=(1, 1, 1))
    with pytest.raises(ValueError, match="empty must be one of"):
        OrganMetrics({1: "a"}, empty="ignore")
    with pytest.raises(ValueError, match="no organ labels"):
        OrganMetrics({0: "background"})


def test_cropping_keeps_monai_values_on_full_arrays():
    """Organs touching the array border and scattered voxels: same Dice / HD95 as MONAI on the whole arrays."""
    rng = np.random.default_rng(0)
    shape, spacing = (20, 17, 9), (0.7, 1.3, 2.9)
    for _ in range(5):
        pred, gt = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
        for array in (pred, gt):
            lo = rng.integers(0, (15, 12, 5))
            hi = lo + rng.integers(1, 8, 3)
            array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = 1
            array[rng.random(shape) < 0.01] = 1
        pred[0, 0, 0] = gt[-1, -1, -1] = 1
        pv, gv = (torch.as_tensor(a == 1)[None, None].float() for a in (pred, gt))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # MONAI's own use of a deprecated argument
            hd = float(HausdorffDistanceMetric(include_background=True, percentile=95)(pv, gv, spacing=spacing))
        expected = {"dice": float(DiceMetric(include_background=True)(pv, gv)), "hd95": hd}
        assert organ_scores(pred, gt, [1], spacing=spacing)[1] == pytest.approx(expected, rel=1e-6)
