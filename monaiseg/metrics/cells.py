"""Cell metrics of BloodCellSAM2 (docs/methods.md#bloodcellsam2): boundary F1, per-cell-type scores,
segmentation speed."""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction
from scipy import ndimage

from monaiseg.utils.files import atomic_outputs

SCORE_COLUMNS = ("cell_type", "count", "tp", "fp", "fn", "precision", "recall", "f1")


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary (H, W) bool of a mask (H, W): foreground pixels with a 4-neighbour in the background.

    Pixels outside the image count as background, so a mask touching the border has a boundary there.
    """
    mask = np.asarray(mask, bool)
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def boundary_f1(pred: np.ndarray, gt: np.ndarray, tolerance: float = 2) -> float:
    """Boundary F1 (BF score) of two masks (H, W) bool.

    Precision is the fraction of prediction boundary pixels within ``tolerance`` pixels (Euclidean)
    of the ground-truth boundary, recall the converse. Both boundaries empty -> 1.0; one empty -> 0.0.
    """
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.ndim != 2 or pred.shape != gt.shape:
        raise ValueError(f"boundary_f1 needs two masks of the same 2D shape, got {pred.shape} and {gt.shape}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    pred_b, gt_b = mask_boundary(pred), mask_boundary(gt)
    if not pred_b.any() or not gt_b.any():
        return float(pred_b.any() == gt_b.any())
    precision = np.mean(ndimage.distance_transform_edt(~gt_b)[pred_b] <= tolerance)
    recall = np.mean(ndimage.distance_transform_edt(~pred_b)[gt_b] <= tolerance)
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


class BoundaryF1Metric(CumulativeIterationMetric):
    """Boundary F1 per case and class on one-hot (B, C, H, W) y_pred / y (binarised at 0.5) -> buffer (B, C').

    ``C' = C - 1`` unless ``include_background``. Works like MONAI's ``DiceMetric`` (also with
    ``monai.handlers.IgniteMetricHandler``); ``aggregate`` reduces the buffer with ``reduction``.
    """

    def __init__(
        self,
        tolerance: float = 2,
        include_background: bool = False,
        reduction: MetricReduction | str = MetricReduction.MEAN,
    ) -> None:
        super().__init__()
        self.tolerance = tolerance
        self.include_background = include_background
        self.reduction = reduction

    def _compute_tensor(  # type: ignore[override]
        self, y_pred: torch.Tensor, y: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        if y_pred.ndim != 4 or y_pred.shape != y.shape:
            raise ValueError(
                f"BoundaryF1Metric needs one-hot y_pred and y of the same shape (B, C, H, W), got "
                f"{tuple(y_pred.shape)} and {tuple(y.shape)}"
            )
        first = 0 if self.include_background else 1
        pred = (y_pred[:, first:] > 0.5).detach().cpu().numpy()
        gt = (y[:, first:] > 0.5).detach().cpu().numpy()
        scores = [[boundary_f1(p, g, self.tolerance) for p, g in zip(ps, gs)] for ps, gs in zip(pred, gt)]
        return torch.tensor(scores, dtype=torch.float32, device=y_pred.device).view(pred.shape[:2])

    def aggregate(self, reduction: MetricReduction | str | None = None) -> torch.Tensor:
        """Reduce the buffer (B_total, C') with ``reduction`` (default: the constructor's)."""
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError(f"BoundaryF1Metric: nothing to aggregate, buffer is {type(data).__name__}")
        return do_metric_reduction(data, reduction or self.reduction)[0]


def _ratio(num: int, den: int) -> float:
    return num / den if den else math.nan


def _nanmean(values: Iterable[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def cell_type_scores(records: Iterable[Sequence], type_names: Sequence[str]) -> dict[str, dict[str, float]]:
    """Pixel precision / recall / F1 per cell type, pooled over its records, plus their macro average.

    ``records``: ``(cell_type, tp, fp, fn)`` per cell or image, with ``cell_type`` a name from
    ``type_names`` or its index, and tp / fp / fn pixel counts (e.g. ``(pred & gt).sum()``).
    Returns ``{name: {"count", "tp", "fp", "fn", "precision", "recall", "f1"}, ..., "macro": {...}}``;
    ``count`` is the number of records. A ratio with a zero denominator (e.g. a type without
    records) is NaN and left out of the macro average (NaN if no type has it).
    """
    names = list(type_names)
    if "macro" in names or len(set(names)) != len(names):
        raise ValueError(f"type_names must be unique and not 'macro', got {names}")
    sums = {name: np.zeros(4, np.int64) for name in names}  # count, tp, fp, fn
    for record in records:
        if len(record) != 4:
            raise ValueError(f"a record is (cell_type, tp, fp, fn), got {record!r}")
        cell_type, *counts = record
        is_index = isinstance(cell_type, (int, np.integer)) and 0 <= cell_type < len(names)
        name = names[cell_type] if is_index else cell_type
        if name not in sums:
            raise ValueError(f"unknown cell type {cell_type!r}; known: {names}")
        if any(c < 0 for c in counts):
            raise ValueError(f"pixel counts must be >= 0, got {record!r}")
        sums[name] += [1, *counts]
    scores: dict[str, dict[str, float]] = {}
    for name, (count, tp, fp, fn) in sums.items():
        scores[name] = {
            "count": int(count),
            "tp": int(tp),
            "fp": int(fp),
            "fn": int(fn),
            "precision": _ratio(tp, tp + fp),
            "recall": _ratio(tp, tp + fn),
            "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        }
    scores["macro"] = {key: _nanmean(s[key] for s in scores.values()) for key in ("precision", "recall", "f1")}
    return scores


def write_cell_type_scores(path: str | os.PathLike, scores: dict[str, dict[str, float]]) -> Path:
    """Write :func:`cell_type_scores` output as CSV (columns ``SCORE_COLUMNS``, "macro" row last), atomically."""
    path = Path(path)
    with atomic_outputs(path) as (tmp,), open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=SCORE_COLUMNS, restval="")
        writer.writeheader()
        for name, row in scores.items():
            writer.writerow({"cell_type": name, **row})
    return path


def segmentation_fps(model_fn: Callable[[Any], Any], images: Sequence[Any], warmup: int = 1) -> float:
    """Images per second of ``model_fn`` over ``images``, after ``warmup`` untimed calls on the first ones.

    CUDA is synchronised before and after timing, so asynchronous kernels are counted.
    """
    if len(images) == 0:
        raise ValueError("segmentation_fps: no images")
    for image in images[:warmup]:
        model_fn(image)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for image in images:
        model_fn(image)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)
