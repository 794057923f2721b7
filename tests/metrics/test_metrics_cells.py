"""Cell metrics: boundary F1, per-cell-type precision / recall / F1, segmentation speed."""

import csv
import math

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.handlers import IgniteMetricHandler, from_engine

import monaiseg.metrics.cells as cells
from monaiseg.metrics import BoundaryF1Metric, boundary_f1, cell_type_scores, segmentation_fps, write_cell_type_scores


def square_pair():
    """GT square [2:6]^2 and the same square shifted right by 1 px, in 10x10.

    Each boundary has 12 px. Shared boundary px: rows 2 and 5, columns 3-5 -> 6. Every other boundary px of one
    square is 1 px from the other's boundary. So tolerance 0: P = R = 6/12 -> F1 0.5; tolerance 1: F1 1.
    """
    gt = np.zeros((10, 10), bool)
    gt[2:6, 2:6] = True
    return np.roll(gt, 1, axis=1), gt


def test_boundary_f1_hand_computed():
    pred, gt = square_pair()
    assert cells.mask_boundary(gt).sum() == 12
    assert boundary_f1(pred, gt, tolerance=0) == pytest.approx(0.5)
    assert boundary_f1(pred, gt, tolerance=1) == 1.0
    assert boundary_f1(gt, gt, tolerance=0) == 1.0
    # a single pixel far from the GT: precision 0 and recall 0 -> F1 0
    far = np.zeros_like(gt)
    far[9, 0] = True
    assert boundary_f1(far, gt) == 0.0


def test_boundary_f1_empty_and_bad_input():
    empty = np.zeros((6, 6), bool)
    _, gt = square_pair()
    assert boundary_f1(empty, empty) == 1.0
    assert boundary_f1(empty, gt[:6, :6]) == 0.0 and boundary_f1(gt[:6, :6], empty) == 0.0
    with pytest.raises(ValueError, match="same 2D shape"):
        boundary_f1(empty, np.zeros((6, 7), bool))
    with pytest.raises(ValueError, match="tolerance"):
        boundary_f1(empty, empty, tolerance=-1)


def onehot_batch():
    """(2, 3, 10, 10) one-hot.

    Case 0: class 1 = the shifted square, class 2 absent; case 1: class 1 perfect, class 2 only in the GT.
    """
    pred, gt = square_pair()
    y_pred, y = torch.zeros(2, 3, 10, 10), torch.zeros(2, 3, 10, 10)
    y_pred[0, 1], y[0, 1] = torch.from_numpy(pred), torch.from_numpy(gt)
    y_pred[1, 1], y[1, 1] = torch.from_numpy(gt), torch.from_numpy(gt)
    y[1, 2, 0, 0] = 1
    y_pred[:, 0], y[:, 0] = 1 - y_pred[:, 1:].sum(1), 1 - y[:, 1:].sum(1)
    return y_pred, y


def test_boundary_f1_metric_buffer_and_reduction():
    y_pred, y = onehot_batch()
    metric = BoundaryF1Metric(tolerance=0)
    assert torch.equal(metric(y_pred, y), torch.tensor([[0.5, 1.0], [1.0, 0.0]]))
    assert metric.aggregate().item() == pytest.approx(0.625)
    assert torch.equal(metric.aggregate("mean_batch"), torch.tensor([0.75, 0.5]))
    with_bg = BoundaryF1Metric(tolerance=1, include_background=True)(y_pred, y)
    assert with_bg.shape == (2, 3) and with_bg[0, 1] == 1.0
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        metric(y_pred, y[:, :2])


def test_boundary_f1_metric_with_ignite_handler():
    y_pred, y = onehot_batch()
    engine = Engine(lambda e, batch: batch)
    handler = IgniteMetricHandler(
        metric_fn=BoundaryF1Metric(tolerance=0), output_transform=from_engine(["pred", "label"])
    )
    handler.attach(engine, "bf1")
    engine.run([{"pred": y_pred, "label": y}])
    assert engine.state.metrics["bf1"] == pytest.approx(0.625)
    assert engine.state.metric_details["bf1"].shape == (2, 2)


def test_cell_type_scores_hand_computed(tmp_path):
    records = [("neutrophil", 8, 2, 0), ("neutrophil", 2, 0, 5), (1, 3, 1, 1), ("basophil", 0, 0, 4)]
    scores = cell_type_scores(records, ["neutrophil", "lymphocyte", "basophil", "eosinophil"])
    # neutrophil pooled: tp 10, fp 2, fn 5 -> P 10/12, R 10/15, F1 20/27
    assert scores["neutrophil"] == pytest.approx(
        {"count": 2, "tp": 10, "fp": 2, "fn": 5, "precision": 10 / 12, "recall": 10 / 15, "f1": 20 / 27}
    )
    assert scores["lymphocyte"]["f1"] == pytest.approx(6 / 8)
    assert math.isnan(scores["basophil"]["precision"]) and scores["basophil"]["recall"] == 0.0
    assert all(math.isnan(scores["eosinophil"][k]) for k in ("precision", "recall", "f1"))
    # macro: NaNs left out
    assert scores["macro"] == pytest.approx(
        {"precision": (10 / 12 + 3 / 4) / 2, "recall": (10 / 15 + 3 / 4 + 0) / 3, "f1": (20 / 27 + 6 / 8 + 0) / 3}
    )

    path = write_cell_type_scores(tmp_path / "types.csv", scores)
    rows = list(csv.DictReader(path.open()))
    assert [r["cell_type"] for r in rows] == ["neutrophil", "lymphocyte", "basophil", "eosinophil", "macro"]
    assert rows[0]["tp"] == "10" and float(rows[0]["f1"]) == pytest.approx(20 / 27)
    assert rows[-1]["count"] == "" and list(tmp_path.iterdir()) == [path]


def test_cell_type_scores_bad_records():
    with pytest.raises(ValueError, match="unknown cell type 'monocyte'"):
        cell_type_scores([("monocyte", 1, 0, 0)], ["neutrophil"])
    with pytest.raises(ValueError, match="unknown cell type 3"):
        cell_type_scores([(3, 1, 0, 0)], ["neutrophil"])
    with pytest.raises(ValueError, match=r"\(cell_type, tp, fp, fn\)"):
        cell_type_scores([("neutrophil", 1, 0)], ["neutrophil"])
    with pytest.raises(ValueError, match=">= 0"):
        cell_type_scores([("neutrophil", 1, -1, 0)], ["neutrophil"])


def test_segmentation_fps_with_a_fake_clock(monkeypatch):
    clock = {"now": 0.0}
    monkeypatch.setattr(cells.time, "perf_counter", lambda: clock["now"])
    calls = []

    def model_fn(image):
        calls.append(image)
        clock["now"] += 0.25  # 4 images per second

    assert segmentation_fps(model_fn, ["a", "b", "c"], warmup=2) == pytest.approx(4.0)
    assert calls == ["a", "b", "a", "b", "c"]
    with pytest.raises(ValueError, match="no images"):
        segmentation_fps(model_fn, [])
