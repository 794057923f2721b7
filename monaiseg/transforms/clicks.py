"""Simulated user prompts for interactive training and evaluation (SAM / SAM-Med2D).

Pure functions of masks and a `numpy.random.Generator`, so a fixed seed gives fixed prompts.
Conventions: masks are boolean, (H, W) for one object or (K, H, W) for K objects; points are
pixel indices (x = column, y = row); labels 1 = positive (foreground) click, 0 = negative
(background) click, -1 = padding, which SAM's prompt encoder ignores (its "not a point" token).

- `sample_foreground_click`: the first click, uniform over the object (SAM-Med2D's
  `init_point_sampling` with one point).
- `sample_error_click`: a correction click, uniform over the larger of the two error regions
  of the current prediction: false negatives (missed object, a positive click) or false
  positives (spill, a negative click); ties go to the false negatives. No error at all: a
  padding point (0, 0) with label -1, so batches keep their shape and the model sees no click.
- `jittered_box`: the tight box of the object, shifted as a whole by up to `max_shift` pixels
  (SAM-Med2D's box noise: at most 5 px and at most half of the box's shorter side), clipped.
"""

from __future__ import annotations

import numpy as np
import torch

from monaiseg.prompts import mask_box

PADDING = -1


def _as_numpy(mask) -> np.ndarray:
    return np.asarray(torch.as_tensor(mask).detach().cpu()).astype(bool)


def _pick(region: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
    """(x, y) of a uniformly chosen pixel of a non-empty (H, W) region."""
    rows, cols = np.nonzero(region)
    i = int(rng.integers(rows.size))
    return int(cols[i]), int(rows[i])


def sample_foreground_click(gt, rng: np.random.Generator) -> tuple[int, int, int]:
    """(x, y, 1): a positive click uniform over the object gt (H, W). ValueError if gt is empty."""
    gt = _as_numpy(gt)
    if not gt.any():
        raise ValueError("cannot click on an empty object mask")
    return (*_pick(gt, rng), 1)


def sample_error_click(pred, gt, rng: np.random.Generator) -> tuple[int, int, int]:
    """(x, y, label) for prediction and ground truth (H, W) (bool, or anything > 0 is True).

    label 1: a pixel of the false negatives gt & ~pred; 0: of the false positives pred & ~gt;
    whichever region is larger (ties: false negatives). pred == gt: (0, 0, -1), a padding point.
    """
    pred, gt = _as_numpy(pred), _as_numpy(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    missed, spilled = gt & ~pred, pred & ~gt
    n_missed, n_spilled = int(missed.sum()), int(spilled.sum())
    if n_missed == 0 and n_spilled == 0:
        return 0, 0, PADDING
    if n_missed >= n_spilled:
        return (*_pick(missed, rng), 1)
    return (*_pick(spilled, rng), 0)


def _stack(clicks: list[tuple[int, int, int]], device) -> tuple[torch.Tensor, torch.Tensor]:
    points = torch.tensor([[c[:2]] for c in clicks], dtype=torch.float32, device=device).reshape(-1, 1, 2)
    labels = torch.tensor([[c[2]] for c in clicks], dtype=torch.int64, device=device).reshape(-1, 1)
    return points, labels


def sample_foreground_clicks(gt: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """First clicks for K objects gt (K, H, W) -> points (K, 1, 2) float32, labels (K, 1) int64 (all 1)."""
    return _stack([sample_foreground_click(g, rng) for g in gt], gt.device)


def sample_error_clicks(
    pred: torch.Tensor, gt: torch.Tensor, rng: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One correction click per object: pred, gt (K, H, W) -> points (K, 1, 2), labels (K, 1)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in shape")
    return _stack([sample_error_click(p, g, rng) for p, g in zip(pred, gt)], gt.device)


def jittered_box(
    gt, rng: np.random.Generator | None = None, max_shift: float = 5.0
) -> tuple[float, float, float, float]:
    """(x0, y0, x1, y1) of the object gt (H, W), inclusive pixel indices, shifted as a whole by
    an integer offset in [-s, s] per axis, s = min(max_shift, shorter box side // 2), then clipped
    to the image. `rng` None or `max_shift` 0: the tight box. ValueError if gt is empty."""
    gt = _as_numpy(gt)
    x0, y0, x1, y1 = mask_box(gt)
    shift = int(min(max_shift, min(x1 - x0, y1 - y0) // 2))
    if rng is not None and shift > 0:
        dx, dy = (int(v) for v in rng.integers(-shift, shift + 1, size=2))
        height, width = gt.shape
        x0, x1 = np.clip([x0 + dx, x1 + dx], 0, width - 1)
        y0, y1 = np.clip([y0 + dy, y1 + dy], 0, height - 1)
    return float(x0), float(y0), float(x1), float(y1)


def jittered_boxes(gt: torch.Tensor, rng: np.random.Generator | None = None, max_shift: float = 5.0) -> torch.Tensor:
    """Boxes of K objects gt (K, H, W) -> (K, 4) float32 (see `jittered_box`)."""
    boxes = [jittered_box(g, rng, max_shift) for g in gt]
    return torch.tensor(boxes, dtype=torch.float32, device=gt.device).reshape(-1, 4)


def error_region_click(pred, gt) -> tuple[int, int, int]:
    """The click a user makes to fix a prediction (the click protocol of interactive segmentation):
    at the centre of the largest error region, the pixel farthest from its border (Euclidean
    distance transform, the image border counting as border), (x, y, 1) inside a missed region
    (false negatives, a positive click), (x, y, 0) inside a false positive region (a negative click).
    pred, gt: (H, W); regions are 4-connected components; ties go to the missed region, then to the
    pixel of greatest distance nearest to the mean of those pixels (then the first in row-major order).
    pred == gt: (0, 0, -1), a padding point (no click)."""
    from scipy import ndimage

    pred, gt = _as_numpy(pred), _as_numpy(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction {pred.shape} and ground truth {gt.shape} differ in shape")
    best: tuple[int, int, np.ndarray] | None = None  # (size, -label order, region)
    for label, error in ((1, gt & ~pred), (0, pred & ~gt)):
        components, count = ndimage.label(error)
        if count == 0:
            continue
        sizes = np.bincount(components.ravel())[1:]
        largest = int(np.argmax(sizes))
        if best is None or sizes[largest] > best[0]:
            best = (int(sizes[largest]), label, components == largest + 1)
    if best is None:
        return 0, 0, PADDING
    distance = ndimage.distance_transform_edt(np.pad(best[2], 1))[1:-1, 1:-1]
    rows, cols = np.nonzero(distance == distance.max())
    nearest = int(np.argmin((rows - rows.mean()) ** 2 + (cols - cols.mean()) ** 2))
    return int(cols[nearest]), int(rows[nearest]), best[1]
