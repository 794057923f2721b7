"""PNG overlays of label predictions on images (for demos, docs and bundle outputs)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

_COLOURS = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [255, 225, 25],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
        [250, 190, 212],
        [0, 128, 128],
        [220, 190, 255],
        [170, 110, 40],
    ],
    dtype=np.uint8,
)


def overlay(image: np.ndarray, pred: np.ndarray, gt: np.ndarray | None = None, alpha: float = 0.45) -> np.ndarray:
    """RGB (H, W, 3) uint8: `image` (H, W) grey or (H, W, 3) RGB in [0, 1], `pred` labels filled,
    `gt` labels as white contours."""
    rgb = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    rgb = np.ascontiguousarray(rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=-1))
    for value in np.unique(pred[pred > 0]):
        colour = _COLOURS[(int(value) - 1) % len(_COLOURS)]
        mask = pred == value
        rgb[mask] = ((1 - alpha) * rgb[mask] + alpha * colour).astype(np.uint8)
    if gt is not None:
        for value in np.unique(gt[gt > 0]):
            contours, _ = cv2.findContours((gt == value).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
            cv2.drawContours(rgb, contours, -1, (255, 255, 255), 1)
    return rgb


def save_montage(
    volume: np.ndarray,
    pred: np.ndarray,
    path: str | Path,
    gt: np.ndarray | None = None,
    num_slices: int = 8,
    scale: int = 3,
) -> Path:
    """Write a one-row PNG of `num_slices` slices (last axis) of (I, J, K) arrays, spread over
    the slices that hold foreground in `gt` (or `pred`). Slices are shown rows = J, columns = I."""
    ref = gt if gt is not None and gt.any() else pred
    ks = np.nonzero(ref.reshape(-1, ref.shape[-1]).any(0))[0]
    ks = ks if ks.size else np.arange(volume.shape[-1])
    picks = np.unique(np.linspace(ks[0], ks[-1], num=min(num_slices, ks.size)).round().astype(int))
    tiles = []
    for k in picks:
        tile = overlay(volume[..., k].T, pred[..., k].T, None if gt is None else gt[..., k].T)
        tile = cv2.resize(tile, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        cv2.putText(tile, f"k={k}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        tiles.append(tile)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(tiles, axis=1), cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")
    return path
