"""DSC and NSD with the MedSAM convention (docs/methods.md#medsam2): spacing-aware, tolerance in mm.

Empty cases, per case and class: MONAI ``compute_dice(ignore_empty=False)`` / MONAI
``compute_surface_dice`` -> ours:

- empty GT, empty prediction: 1.0 / NaN -> 1.0 for both;
- empty GT, non-empty prediction: 0.0 / 0.0 -> 0.0;
- non-empty GT, empty prediction: 0.0 / 0.0 -> 0.0.

(``compute_dice`` with MONAI's default ``ignore_empty=True`` returns NaN whenever the GT is empty.)
``binary_dice`` is the same Dice for two masks (numpy or torch) as one float, with the same rule: two
empty masks agree that nothing is there, 1.0. Scripts and tests compare masks with it.
NSD counts boundary voxels (MONAI default); ``use_subvoxels=True`` weights them by surface area
as DeepMind's ``surface-distance`` package, which upstream MedSAM uses.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.metrics import DiceMetric, SurfaceDiceMetric, compute_surface_dice
from monai.utils import MetricReduction, convert_to_tensor, ensure_tuple


class DiceScore(DiceMetric):
    """Dice per case and class on one-hot (B, C, X, Y[, Z]) -> buffer (B, C'); empty GT and prediction = 1.

    ``C' = C - 1`` unless ``include_background``. MONAI's ``ignore_empty=False`` already gives the
    convention.
    """

    def __init__(
        self,
        include_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(
            include_background=include_background, reduction=reduction, get_not_nans=get_not_nans, ignore_empty=False
        )


class NormalizedSurfaceDice(SurfaceDiceMetric):
    """NSD per case and class on one-hot (B, C, X, Y[, Z]) -> buffer (B, C'); empty GT and prediction = 1.

    Args:
        tolerance_mm: one tolerance for all classes, or one per class (C' values).
        include_background: score channel 0 too.
        spacing: voxel size in mm, (X, Y[, Z]) or one per batch item. ``None``: read per batch item from
            the label MetaTensor's affine (unit spacing for a plain tensor). A ``spacing`` keyword of the
            call takes precedence.
        use_subvoxels: weight boundary elements by surface area (DeepMind ``surface-distance``).
        reduction, get_not_nans: as :class:`monai.metrics.SurfaceDiceMetric`.
    """

    def __init__(
        self,
        tolerance_mm: float | Sequence[float] = 2.0,
        include_background: bool = False,
        spacing: float | Sequence[float] | Sequence[Sequence[float]] | None = None,
        use_subvoxels: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(
            class_thresholds=[float(t) for t in ensure_tuple(tolerance_mm)],
            include_background=include_background,
            reduction=reduction,
            get_not_nans=get_not_nans,
            use_subvoxels=use_subvoxels,
        )
        self.spacing = spacing

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        spacing = kwargs.get("spacing", self.spacing)
        if spacing is None:
            spacing = meta_spacing(y)
        first = 0 if self.include_background else 1
        thresholds = self.class_thresholds
        if len(thresholds) == 1:
            thresholds = thresholds * (y_pred.shape[1] - first)
        with warnings.catch_warnings():
            # MONAI warns per case and class on empty masks (handled below) and on its own internal use
            # of a deprecated argument
            warnings.filterwarnings("ignore", message="the (ground truth|prediction) of class")
            warnings.filterwarnings("ignore", message=".*always_return_as_numpy")
            nsd = compute_surface_dice(
                y_pred,
                y,
                class_thresholds=thresholds,
                include_background=self.include_background,
                distance_metric=self.distance_metric,
                spacing=spacing,
                use_subvoxels=self.use_subvoxels,
            )
        spatial = tuple(range(2, y.ndim))
        both_empty = (y_pred[:, first:].sum(spatial) == 0) & (y[:, first:].sum(spatial) == 0)
        return torch.where(both_empty.to(nsd.device), torch.ones_like(nsd), nsd)


def binary_dice(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Dice ``2 |A & B| / (|A| + |B|)`` of two masks of one shape (any dims), foreground = elements > 0
    (booleans, 0/1 masks, label maps, logits); **1.0 when both are empty** (they agree nothing is there), 0.0
    when exactly one is. numpy arrays and torch tensors (any device), mixed or not; counts are exact integers.
    """
    ma, mb = (x.detach() > 0 if isinstance(x, torch.Tensor) else np.asarray(x) > 0 for x in (a, b))
    if tuple(ma.shape) != tuple(mb.shape):
        raise ValueError(f"binary_dice: masks of different shapes {tuple(ma.shape)} and {tuple(mb.shape)}")
    if isinstance(ma, np.ndarray) and isinstance(mb, np.ndarray):
        both, sizes = int(np.count_nonzero(ma & mb)), int(np.count_nonzero(ma)) + int(np.count_nonzero(mb))
    else:
        device = next(m.device for m in (ma, mb) if isinstance(m, torch.Tensor))
        ta, tb = torch.as_tensor(ma, device=device), torch.as_tensor(mb, device=device)
        both, sizes = int(torch.count_nonzero(ta & tb)), int(torch.count_nonzero(ta)) + int(torch.count_nonzero(tb))
    return 1.0 if sizes == 0 else 2.0 * both / sizes


def meta_spacing(y: torch.Tensor) -> list[list[float]] | None:
    """Voxel size per batch item of a batch-first MetaTensor (B, C, *spatial) from its affine; else ``None``."""
    if not isinstance(y, MetaTensor):
        return None
    affine = y.affine
    affines = affine if affine.ndim == 3 else affine[None].expand(y.shape[0], -1, -1)
    return [affine_to_spacing(a, r=y.ndim - 2).tolist() for a in affines]


def label_volume_scores(
    pred: np.ndarray | torch.Tensor,
    gt: np.ndarray | torch.Tensor,
    labels: Sequence[int],
    spacing: float | Sequence[float],
    tolerance_mm: float = 2.0,
    use_subvoxels: bool = False,
) -> dict[int, dict[str, float]]:
    """DSC and NSD per label of integer label maps ``pred``, ``gt`` (X, Y, Z) or (X, Y).

    Returns ``{label: {"dsc": float, "nsd": float}}``; a label absent from both scores 1.
    """
    pred_t = convert_to_tensor(pred, track_meta=False)
    gt_t = convert_to_tensor(gt, track_meta=False)
    if pred_t.shape != gt_t.shape or pred_t.ndim not in (2, 3):
        raise ValueError(
            "pred and gt must be label maps of the same 2D or 3D shape, "
            f"got {tuple(pred_t.shape)} and {tuple(gt_t.shape)}."
        )
    labels = [int(v) for v in labels]
    spacing = [float(s) for s in np.ravel(spacing)]  # MONAI refuses numpy scalar types
    spacing = spacing[0] if len(spacing) == 1 else spacing
    pred_1h = torch.stack([pred_t == v for v in labels])[None]  # (1, L, *spatial)
    gt_1h = torch.stack([gt_t == v for v in labels])[None]
    dsc = DiceScore(include_background=True)(pred_1h, gt_1h)[0]
    nsd = NormalizedSurfaceDice(tolerance_mm, include_background=True, spacing=spacing, use_subvoxels=use_subvoxels)(
        pred_1h, gt_1h
    )[0]
    return {v: {"dsc": float(d), "nsd": float(n)} for v, d, n in zip(labels, dsc, nsd)}
