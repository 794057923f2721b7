"""EndoVis metrics (SurgicalSAM / ISINet definitions) on a hand-computed example."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monaiseg.metrics.endovis import EndoVisIoU, endovis_frame_score, endovis_metrics


def _m(rows: list[str]) -> np.ndarray:
    return np.array([[int(ch) for ch in row] for row in rows], np.uint8)


# frames (prediction, ground truth), 2 x 4 pixels, classes 1..3
A = (_m(["1003", "2220"]), _m(["1100", "2200"]))  # partial overlaps and a false positive class
B = (_m(["0000", "0000"]), _m(["3300", "0000"]))  # empty prediction, ground truth class 3
C = (_m(["0000", "0000"]), _m(["0000", "0000"]))  # nothing anywhere
D = (_m(["1100", "0000"]), _m(["0000", "0000"]))  # prediction on a frame without ground truth
E = (_m(["0001", "0000"]), _m(["0001", "0000"]))  # perfect


def test_frame_scores():
    """A: class 1 I=1 U=2 -> 1/2; class 2 I=2 U=3 -> 2/3; class 3 (prediction only) I=0 U=1 -> 0.
    Frame IoU = (1/2 + 2/3 + 0) / 3 = 7/18; Challenge IoU over GT classes {1, 2} = 7/12; I=3, U=6.
    B: empty prediction with GT -> IoU 0, Challenge 0, class 3 gets 0, nothing accumulated.
    C: skipped. D: class 1 I=0 U=2 -> IoU 0, no Challenge IoU (no GT class)."""
    a = endovis_frame_score(*A, num_classes=3)
    assert a.iou == pytest.approx(7 / 18) and a.challenge_iou == pytest.approx(7 / 12)
    assert a.class_ious == pytest.approx({1: 1 / 2, 2: 2 / 3, 3: 0.0}) and (a.intersection, a.union) == (3, 6)
    b = endovis_frame_score(*B, num_classes=3)
    assert (b.iou, b.challenge_iou, b.class_ious, b.intersection, b.union) == (0.0, 0.0, {3: 0.0}, 0, 0)
    c = endovis_frame_score(*C, num_classes=3)
    assert (c.iou, c.challenge_iou, c.class_ious) == (None, None, {})
    d = endovis_frame_score(*D, num_classes=3)
    assert (d.iou, d.challenge_iou, d.class_ious, d.union) == (0.0, None, {1: 0.0}, 2)


def test_dataset_metrics_hand_computed():
    """Frames A..E (test_frame_scores) plus E (1 px class 1, perfect: IoU 1, Challenge 1, I=U=1):
    IoU = mean(7/18, 0 [B], 0 [D], 1 [E]) = 25/72; C is skipped.
    Challenge IoU = mean(7/12, 0 [B], 1 [E]) = 19/36 (D has no GT class).
    per class: 1 -> mean(1/2 [A], 0 [D], 1 [E]) = 1/2; 2 -> 2/3 [A]; 3 -> mean(0 [A], 0 [B]) = 0.
    mcIoU = (1/2 + 2/3 + 0) / 3 = 7/18; cumulative I/U = (3 + 0 + 1) / (6 + 2 + 1) = 4/9.
    With num_classes=4, class 4 is absent from both everywhere: NaN and left out of mcIoU."""
    frames = [A, B, C, D, E]
    result = endovis_metrics([p for p, _ in frames], [g for _, g in frames], num_classes=4)
    assert result["iou"] == pytest.approx(25 / 72)
    assert result["challenge_iou"] == pytest.approx(19 / 36)
    assert result["mciou"] == pytest.approx(7 / 18)
    assert result["cumulative_iou"] == pytest.approx(4 / 9)
    per_class = result["per_class_iou"]
    assert len(per_class) == 4 and per_class[:3] == pytest.approx([1 / 2, 2 / 3, 0.0])
    assert math.isnan(per_class[3])
    assert result["num_frames"] == 4


def test_accumulator_torch_inputs_reset_and_frames():
    metric = EndoVisIoU(num_classes=3)
    metric.update(torch.from_numpy(A[0])[None], torch.from_numpy(A[1]).float()[None, None], name="seq_1/00000")
    metric.update(*E, name="seq_1/00001")
    assert [name for name, _ in metric.frames] == ["seq_1/00000", "seq_1/00001"]
    result = metric.aggregate()
    assert result["iou"] == pytest.approx((7 / 18 + 1) / 2)
    assert result["per_class_iou"] == pytest.approx([3 / 4, 2 / 3, 0.0])
    metric.reset()
    empty = metric.aggregate()
    assert math.isnan(empty["iou"]) and math.isnan(empty["mciou"]) and empty["num_frames"] == 0


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"ground truth has class ids \[9\] outside 0..7"):
        endovis_frame_score(np.zeros((2, 2), int), np.full((2, 2), 9))
    with pytest.raises(ValueError, match=r"prediction \(2, 3\) and ground truth \(2, 2\) differ"):
        endovis_frame_score(np.zeros((2, 3), int), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match=r"class-id map \(H, W\), got shape \(2, 2, 2\)"):
        endovis_frame_score(np.zeros((2, 2, 2), int), np.zeros((2, 2), int))
    with pytest.raises(ValueError, match="integer class ids"):
        endovis_frame_score(np.full((2, 2), 0.5), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        EndoVisIoU(0)
