"""SAM-Med2D's training loss: 20 x focal + Dice + MSE between predicted and actual IoU."""

from __future__ import annotations

import torch
from monai.losses import DiceLoss, FocalLoss
from torch import nn


def soft_iou(logits: torch.Tensor, targets: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU of sigmoid(logits) with binary targets, per object: (K, 1, H, W) x 2 -> (K, 1)."""
    probs = torch.sigmoid(logits).flatten(2)
    targets = targets.flatten(2).to(probs)
    inter = (probs * targets).sum(-1)
    union = probs.sum(-1) + targets.sum(-1) - inter
    return (inter + eps) / (union + eps)


class SAMMed2DLoss(nn.Module):
    """L = focal_weight * Focal + dice_weight * Dice + iou_weight * MSE(iou_pred, IoU), on mask
    logits and binary targets (K, 1, H, W) and the decoder's IoU prediction (K, 1).

    - Focal: MONAI `FocalLoss` on sigmoid, gamma 2, alpha 0.25, mean over all pixels.
    - Dice: MONAI `DiceLoss` on sigmoid over the whole batch (batch=True), smooth 1 (nr and dr).
    - IoU: soft IoU of each object's sigmoid mask with its target, detached: the IoU head
      learns to score the mask, it does not push the mask (SAM-Med2D's code takes one soft IoU
      over the whole batch, not detached).
    Defaults are SAM-Med2D's 20 : 1 : 1.
    """

    def __init__(
        self,
        focal_weight: float = 20.0,
        dice_weight: float = 1.0,
        iou_weight: float = 1.0,
        gamma: float = 2.0,
        alpha: float = 0.25,
        smooth: float = 1.0,
    ):
        super().__init__()
        self.focal_weight, self.dice_weight, self.iou_weight = focal_weight, dice_weight, iou_weight
        self.focal = FocalLoss(gamma=gamma, alpha=alpha, use_softmax=False, reduction="mean")
        self.dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=smooth, smooth_dr=smooth)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, iou_pred: torch.Tensor) -> torch.Tensor:
        if logits.shape != targets.shape or logits.ndim != 4 or logits.shape[1] != 1:
            raise ValueError(
                f"SAMMed2DLoss expects logits and targets (K, 1, H, W), got {tuple(logits.shape)} "
                f"and {tuple(targets.shape)}"
            )
        targets = targets.to(logits)
        iou = soft_iou(logits, targets).detach()
        mse = torch.mean((iou_pred.reshape(iou.shape).to(logits) - iou) ** 2)
        return (
            self.focal_weight * self.focal(logits, targets)
            + self.dice_weight * self.dice(logits, targets)
            + self.iou_weight * mse
        )
