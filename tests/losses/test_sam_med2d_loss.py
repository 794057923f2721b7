"""SAM-Med2D's loss (monaiseg.losses.sam_med2d) on a hand-computed case."""

from __future__ import annotations

import math

import pytest
import torch

from monaiseg.losses.sam_med2d import SAMMed2DLoss, soft_iou

# logits 0 (p = 0.5) on a 2x2 image whose target is one pixel; predicted IoU 0.5
LOGITS = torch.zeros(1, 1, 2, 2)
TARGET = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
IOU_PRED = torch.tensor([[0.5]])
LN2 = math.log(2)
FOCAL = (0.25 * 0.25 * LN2 + 3 * 0.75 * 0.25 * LN2) / 4  # alpha 0.25, gamma 2, mean over 4 pixels
DICE = 1 - (2 * 0.5 + 1) / (2.0 + 1.0 + 1)  # smooth 1: 0.5
SOFT_IOU = 0.5 / (2.0 + 1.0 - 0.5)  # 0.2
MSE = (0.5 - SOFT_IOU) ** 2  # 0.09


def test_hand_computed_value_with_the_20_1_1_weighting():
    loss = SAMMed2DLoss()
    assert float(loss(LOGITS, TARGET, IOU_PRED)) == pytest.approx(20 * FOCAL + DICE + MSE, rel=1e-5)
    assert float(soft_iou(LOGITS, TARGET)) == pytest.approx(SOFT_IOU, rel=1e-5)


@pytest.mark.parametrize("weights,expected", [((1, 0, 0), FOCAL), ((0, 1, 0), DICE), ((0, 0, 1), MSE)])
def test_each_term_alone(weights, expected):
    loss = SAMMed2DLoss(*weights)
    assert float(loss(LOGITS, TARGET, IOU_PRED)) == pytest.approx(expected, rel=1e-5)


def test_iou_term_trains_the_iou_head_only():
    logits = LOGITS.clone().requires_grad_(True)
    iou_pred = IOU_PRED.clone().requires_grad_(True)
    SAMMed2DLoss(0, 0, 1)(logits, TARGET, iou_pred).backward()
    assert torch.count_nonzero(logits.grad) == 0
    assert float(iou_pred.grad) == pytest.approx(2 * (0.5 - SOFT_IOU))


def test_perfect_prediction_costs_almost_nothing_and_shapes_are_checked():
    logits = (TARGET * 2 - 1) * 20
    assert float(SAMMed2DLoss()(logits, TARGET, torch.ones(1, 1))) < 1e-3
    with pytest.raises(ValueError, match=r"\(K, 1, H, W\)"):
        SAMMed2DLoss()(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, 2), IOU_PRED)
