"""One evaluated case as the overlay handlers see it: label maps, its Dice, its name and its picture,
from an evaluator output item (`engine.state.output[i]`: `image` (C, *spatial), `pred` and `label`
one-hot (K, *spatial) or label maps (1, *spatial)); classification outputs (`pred` (K,) logits, `label`
a class index) as the true class's probability."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from monaiseg.visualize import case_picture


def to_numpy(x) -> np.ndarray:
    """A tensor, MetaTensor or array as a float32 numpy array on the CPU."""
    return np.asarray(torch.as_tensor(x).detach().cpu().float())


def label_map(x) -> np.ndarray:
    """(*spatial) int32 labels from (1, *spatial) labels, (K, *spatial) one-hot maps (argmax; channel 0 is
    background) or (K, *spatial) binary maps that are not one-hot (channel c becomes label c + 1)."""
    a = to_numpy(x)
    if a.ndim < 3:
        raise ValueError(f"a label map of shape {a.shape}: expected (channels, *spatial) with 2 or 3 spatial dims")
    if a.shape[0] == 1:
        return a[0].round().astype(np.int32)
    sums = a.sum(0)
    if np.allclose(sums, 1.0):
        return a.argmax(0).astype(np.int32)
    return ((a > 0.5) * np.arange(1, a.shape[0] + 1).reshape(-1, *([1] * (a.ndim - 1)))).max(0).astype(np.int32)


def per_label_dice(pred: np.ndarray, gt: np.ndarray) -> dict[int, float]:
    """Dice of each foreground label present in `pred` or `gt` (label maps of one shape)."""
    scores = {}
    for value in np.union1d(np.unique(pred[pred > 0]), np.unique(gt[gt > 0])):
        p, g = pred == value, gt == value
        scores[int(value)] = float(2 * np.logical_and(p, g).sum() / (p.sum() + g.sum()))
    return scores


def case_dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean Dice over the foreground labels present in `pred` or `gt`; 1.0 when both are empty."""
    scores = per_label_dice(pred, gt)
    return float(np.mean(list(scores.values()))) if scores else 1.0


def case_name(out: Mapping, index: int, key: str = "image") -> str:
    """The file name (without folders and extensions) of an output item's `key`, else `case_<index>`."""
    meta = getattr(out.get(key), "meta", None) or {}
    name = meta.get("filename_or_obj")
    if isinstance(name, (list, tuple)):
        name = name[0] if name else None
    return Path(str(name)).name.split(".")[0] if name else f"case_{index}"


def class_probabilities(out: Mapping) -> tuple[np.ndarray, int]:
    """(softmax of the logits `pred` (K,), the true class index `label`) of a classification output item."""
    logits = torch.as_tensor(out["pred"]).detach().float().flatten().cpu()
    return torch.softmax(logits, 0).numpy(), int(torch.as_tensor(out["label"]).flatten()[0])


def segmentation_view(out: Mapping, frames: int = 1, size: int = 256) -> tuple[dict[int, float], np.ndarray]:
    """(per-label Dice, RGB picture titled with the case's mean Dice) of a segmentation output item."""
    pred, gt = label_map(out["pred"]), label_map(out["label"])
    scores = per_label_dice(pred, gt)
    dice = float(np.mean(list(scores.values()))) if scores else 1.0
    title = f"{case_name(out, 0)}  dice={dice:.3f}"
    return scores, case_picture(to_numpy(out["image"]), pred, gt, title=title, frames=frames, size=size)


def classification_view(out: Mapping, class_names: list[str], size: int = 160) -> tuple[float, np.ndarray]:
    """(probability of the true class, RGB picture of the image titled with true / predicted class)."""
    probs, label = class_probabilities(out)
    image = to_numpy(out["image"])
    empty = np.zeros(image.shape[1:], np.int32)
    pred_name, true_name = class_names[int(probs.argmax())], class_names[label]
    title = f"{true_name} -> {pred_name} p={probs[label]:.2f}"
    return float(probs[label]), case_picture(image, empty, None, title=title, size=size)


class Stopwatch:
    """Seconds spent inside `with stopwatch:` blocks, summed."""

    def __init__(self) -> None:
        self.seconds, self._start = 0.0, 0.0

    def __enter__(self) -> Stopwatch:
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds += time.perf_counter() - self._start
