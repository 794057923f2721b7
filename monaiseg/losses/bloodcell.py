"""BloodCellSAM2 loss: L = w_seg (Focal + Dice) + w_temp L_temp + w_mor L_mor (docs/methods.md#bloodcellsam2)."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from monai.losses import DiceFocalLoss
from torch import nn

from monaiseg.losses.curvature import ContourCurvatureLoss
from monaiseg.losses.temporal import TemporalContrastiveLoss


class BloodCellLoss(nn.Module):
    """Weighted sum of the segmentation, temporal-contrastive and contour-curvature terms.

    ``forward(pred, target)``: ``pred`` is logits (B, 1, H, W) / clips (B, 1, H, W, T), or in the video
    stage ``{"logits": (K, 1, H, W, T), "memory": (K, C, h, w, T)}`` whose K rows are the cells tracked
    in one clip, so that ``target`` (K, 1, H, W, T) also gives the cell identities L_temp needs.
    Focal + Dice is MONAI's ``DiceFocalLoss`` (sigmoid); on clips its Dice spans the whole clip.
    L_temp is computed only when memory is given and ``temp_weight > 0``; a term whose weight is 0 is
    skipped. ``last_terms`` keeps the unweighted value of each computed term ("seg", "temp", "mor").
    Raises ``FloatingPointError`` ("NaN loss ...") naming the term when one is not finite.
    """

    def __init__(
        self,
        seg_weight: float = 1.0,
        temp_weight: float = 0.5,
        mor_weight: float = 0.2,
        temperature: float = 0.1,
        focal_gamma: float = 2.0,
    ):
        super().__init__()
        self.weights = {"seg": float(seg_weight), "temp": float(temp_weight), "mor": float(mor_weight)}
        if any(v < 0 for v in self.weights.values()):
            raise ValueError(f"loss weights must be >= 0, got {self.weights}")
        self.seg = DiceFocalLoss(sigmoid=True, gamma=focal_gamma)
        self.temp = TemporalContrastiveLoss(temperature)
        self.mor = ContourCurvatureLoss(sigmoid=True)
        self.last_terms: dict[str, float] = {}

    def forward(self, pred: torch.Tensor | Mapping[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Total loss (scalar); ``target`` is the binary mask shaped like the logits."""
        logits, memory = (pred["logits"], pred.get("memory")) if isinstance(pred, Mapping) else (pred, None)
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
        terms = {}
        if self.weights["seg"] > 0:
            terms["seg"] = self.seg(logits, target)
        if self.weights["temp"] > 0 and memory is not None:
            terms["temp"] = self.temp(memory, target)
        if self.weights["mor"] > 0:
            terms["mor"] = self.mor(logits)
        if not terms:
            raise ValueError("BloodCellLoss: every term has weight 0 or lacks its input")
        self.last_terms = {name: float(value.detach()) for name, value in terms.items()}
        for name, value in self.last_terms.items():
            if not math.isfinite(value):
                raise FloatingPointError(f"NaN loss: term {name!r} is {value}")
        return sum(self.weights[name] * value for name, value in terms.items())
