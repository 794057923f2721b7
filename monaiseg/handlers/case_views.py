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

from monaiseg.visualize import case_picture, key_index, spread_indices


def to_numpy(x) -> np.ndarray:
    """A tensor, MetaTensor or array as a float32 numpy array on the CPU."""
    return np.asarray(torch.as_tensor(x).detach().cpu().float())


def _one_hot(a: torch.Tensor) -> bool:
    """Whether (K > 1, *spatial) maps sum to 1 over K (checked on every 97th voxel: cheap on large volumes)."""
    sample = a.flatten(1)[:, ::97].float()
    return a.shape[0] > 1 and torch.allclose(sample.sum(0), torch.ones((), device=a.device))


def label_map(x) -> torch.Tensor:
    """(*spatial) int32 labels, on the input's device, from (1, *spatial) labels, (K, *spatial) one-hot maps
    (argmax; channel 0 is background) or (K, *spatial) binary maps that are not one-hot (channel c becomes
    label c + 1)."""
    a = torch.as_tensor(x).detach()
    if a.ndim < 3:
        raise ValueError(f"a label map of shape {tuple(a.shape)}: expected (channels, *spatial), 2 or 3 spatial dims")
    if a.shape[0] == 1:
        return a[0].round().int()
    if _one_hot(a):
        return a.argmax(0).int()
    values = torch.arange(1, a.shape[0] + 1, device=a.device).reshape(-1, *([1] * (a.ndim - 1)))
    return ((a > 0.5) * values).amax(0).int()


def per_label_dice(pred, gt) -> dict[int, float]:
    """Dice of each foreground label present in `pred` or `gt`: both (K, *spatial) binary maps of one shape
    (channel by channel, no label map of the whole case is made) or both (1, *spatial) label maps."""
    p, g = torch.as_tensor(pred).detach(), torch.as_tensor(gt).detach()
    if p.shape != g.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and ground truth {tuple(g.shape)} differ in shape")
    if p.shape[0] > 1:
        first = 1 if _one_hot(g) else 0  # channel c is label c (one-hot) or c + 1
        pf, gf = p.flatten(1).float(), g.flatten(1).float()  # binary maps (views when already float)
        scores = {}
        for c in range(first, p.shape[0]):
            size = float(pf[c].sum() + gf[c].sum())
            if size > 0:
                scores[c + 1 - first] = float(2 * torch.dot(pf[c], gf[c])) / size
        return scores
    pm, gm = p[0].round().long().flatten(), g[0].round().long().flatten()
    n = int(max(int(pm.max()), int(gm.max()), 0)) + 1
    confusion = torch.bincount(pm.clamp(min=0) * n + gm.clamp(min=0), minlength=n * n).reshape(n, n).double()
    sizes = confusion.sum(1) + confusion.sum(0)
    return {v: float(2 * confusion[v, v] / sizes[v]) for v in range(1, n) if sizes[v] > 0}


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
    """(per-label Dice over the whole case, RGB picture titled with their mean over the labels present in the
    case's ground truth or prediction) of a segmentation output
    item. Of a volume (or video) only the drawn slices become label maps and leave the device: its key
    slice (the most ground truth, `key_index`) when `frames` is 1, else up to `frames` slices spread over it."""
    pred, gt = torch.as_tensor(out["pred"]).detach(), torch.as_tensor(out["label"]).detach()
    scores = per_label_dice(pred, gt)
    dice = float(np.mean(list(scores.values()))) if scores else 1.0
    present = f"{len(scores)} present label{'s' if len(scores) != 1 else ''}"
    title = f"{case_name(out, 0)}  dice={dice:.3f} ({present})"
    image = torch.as_tensor(out["image"]).detach()
    numbers = None
    if pred.ndim == 4 and image.ndim == 4 and image.shape[-1] == pred.shape[-1]:
        if frames > 1:
            numbers = spread_indices(pred.shape[-1], frames)
        else:  # foreground voxels per slice: channels 1.. of one-hot maps, else > 0
            counts = []
            for v in (gt, pred):
                fg = v[1:].float() if _one_hot(v) else (v > 0).float()
                counts.append(fg.sum(dim=tuple(range(v.ndim - 1))).cpu().numpy())  # (K,)
            numbers = [key_index(*counts)]
        image, pred, gt = image[..., numbers], pred[..., numbers], gt[..., numbers]
    pred_map, gt_map = label_map(pred).cpu().numpy(), label_map(gt).cpu().numpy()
    picture = case_picture(
        to_numpy(image), pred_map, gt_map, title=title, frames=frames, size=size, slice_numbers=numbers
    )
    return scores, picture


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
