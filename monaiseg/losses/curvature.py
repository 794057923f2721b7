"""L_mor: contour-curvature regulariser on a soft mask (BloodCellSAM2, docs/methods.md#bloodcellsam2)."""

from __future__ import annotations

import torch
from monai.networks.layers import gaussian_1d, separable_filtering
from monai.utils import LossReduction
from torch.nn.modules.loss import _Loss

_EPS = 1e-3  # gradient magnitude (probability per pixel) below which normals shrink towards 0


class ContourCurvatureLoss(_Loss):
    """Boundary-weighted mean squared level-set curvature of a soft mask.

    For p = sigmoid(input) (or the input itself), optionally Gaussian-smoothed:
    ``kappa = div(grad p / |grad p|)`` by central differences (``torch.gradient``), and per image
    ``L = sum(|grad p| * kappa**2) / (sum(|grad p|) + eps)``: the mean squared curvature along the
    contour, in 1/pixel**2 (a disc of radius r scores about 1/r**2). Constant masks (empty or full)
    score 0. Differentiable w.r.t. the input.

    Args:
        sigmoid: apply a sigmoid to the input (logits); else the input holds probabilities.
        smooth_sigma: std (pixels) of the Gaussian pre-smoothing; 0 disables it.
        reduction: "mean" / "sum" over images, or "none": (B,) for 2D input, (B, T) for clips.
    """

    def __init__(self, sigmoid: bool = True, smooth_sigma: float = 1.0, reduction: LossReduction | str = "mean"):
        super().__init__(reduction=LossReduction(reduction).value)
        if smooth_sigma < 0:
            raise ValueError(f"smooth_sigma must be >= 0, got {smooth_sigma}")
        self.sigmoid = sigmoid
        self.smooth_sigma = float(smooth_sigma)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        """input: (B, 1, H, W) or clips (B, 1, H, W, T), each frame scored as a 2D image."""
        if input.ndim not in (4, 5) or input.shape[1] != 1:
            raise ValueError(f"expected (B, 1, H, W) or (B, 1, H, W, T), got {tuple(input.shape)}")
        clip = input.ndim == 5
        x = input.movedim(-1, 1).flatten(0, 1) if clip else input  # (B*T, 1, H, W)
        p = torch.sigmoid(x) if self.sigmoid else x
        if self.smooth_sigma > 0:
            kernel = gaussian_1d(torch.tensor(self.smooth_sigma), truncated=4.0)
            p = separable_filtering(p, [kernel, kernel], mode="replicate")  # along H and W
        gy, gx = torch.gradient(p, dim=(-2, -1))
        norm = torch.sqrt(gx**2 + gy**2 + _EPS**2)
        kappa = torch.gradient(gx / norm, dim=-1)[0] + torch.gradient(gy / norm, dim=-2)[0]
        weight = norm - _EPS  # ~|grad p|, exactly 0 where p is constant
        loss = (weight * kappa**2).sum((-3, -2, -1)) / (weight.sum((-3, -2, -1)) + _EPS)
        if clip:
            loss = loss.view(input.shape[0], input.shape[-1])
        if self.reduction == LossReduction.MEAN.value:
            return loss.mean()
        if self.reduction == LossReduction.SUM.value:
            return loss.sum()
        return loss
