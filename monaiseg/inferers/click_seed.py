"""Clicks on box-trained models (MedSAM, LiteMedSAM): a new object from a click, and a click as a correction.

A new object from clicks (no box): the first foreground click seeds it. With `mode` "boxes" (the default,
chosen by `scripts/bench_click_protocol.py` on the shared real images, see bundles/lite_medsam/docs) the
decoder gets square candidate boxes centred on the click, of sides `sides` (fractions of the network
input's side S), in one call, and the box with the highest predicted IoU wins; "boxes+points" gives every
candidate the click too; "points" gives the click alone. Further clicks of the same request then correct
that result one by one, in their order. A correction (`SlicePrompt` with `mask`): the clicks so far, the
current box and the previous low-res logits as SAM's mask prompt; its result changes the previous one only
in the region the click is in and within the click's disk (`merge_click`), so a click never alters what it
does not touch. A click
the decoder does not take (its pixel stays wrong) becomes a box edit (`edit_box`): box-trained models
follow boxes far better than clicks.

`seed(decode, prompt, sides, mode, size)`: `decode(prompt, boxes)` is `SliceFeatures.decode` on one slice
(logits (K, 1, S, S) in the network frame and predicted IoU (K,)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from monaiseg.inferers.slice_views import Box, SlicePrompt

CLICK_MODES = ("boxes", "boxes+points", "points")
CLICK_SIDES = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6, 0.8)
MASK_INPUT = (256, 256)  # SAM's mask prompt size (4x its 64 x 64 embedding)

Decode = Callable[[SlicePrompt, Sequence[Box] | None], tuple[torch.Tensor, torch.Tensor]]


def candidate_boxes(point: Sequence[float], sides: Sequence[float], size: Sequence[int]) -> list[Box]:
    """Square boxes (x0, y0, x1, y1) of sides `sides` * S centred on the click (x, y), clipped to the
    (h, w) = `size` network input, S = max(h, w)."""
    height, width = size
    x, y = point
    boxes = []
    for side in sides:
        half = side * max(height, width) / 2
        boxes.append((max(x - half, 0.0), max(y - half, 0.0), min(x + half, width - 1.0), min(y + half, height - 1.0)))
    return boxes


def low_res(logits: torch.Tensor) -> torch.Tensor:
    """Logits (1, 1, S, S) of the network frame -> the mask prompt kept for a correction (1, 256, 256) float16."""
    return F.interpolate(logits.float(), size=MASK_INPUT, mode="bilinear", align_corners=False)[0].half().cpu()


def merge_click(previous: torch.Tensor, new: torch.Tensor, click: Sequence[float], label: int) -> torch.Tensor:
    """Logits (1, 1, S, S) of a correction: the previous ones, with the new ones where the click's change
    is: the connected region (4-connected) the click is in, of what the new mask adds to the previous one
    (positive click) or removes from it (negative click), within the click's disk: centred on the click,
    of radius its distance to the previous mask's boundary (the largest disk around the click that the
    previous mask gives the label the click calls wrong; no bound where the previous mask is all of it).
    A click at the centre of an error region thus changes at most that region's width around it, never
    the correct part of the mask beyond it. Nothing changes where the new mask does not flip the click."""
    before, after = previous[0, 0] > 0, new[0, 0].to(previous.device) > 0
    region = (after & ~before) if label == 1 else (before & ~after)
    height, width = region.shape
    x, y = min(max(int(round(click[0])), 0), width - 1), min(max(int(round(click[1])), 0), height - 1)
    parts, _ = ndimage.label(region.cpu().numpy())
    if parts[y, x] == 0:
        return previous
    part = parts == parts[y, x]
    wrong = before.cpu().numpy() == (label == 0)  # pixels the previous mask gives the label the click calls wrong
    if not wrong.all():
        radius = ndimage.distance_transform_edt(wrong)[y, x]
        rows, cols = np.ogrid[:height, :width]
        part &= (rows - y) ** 2 + (cols - x) ** 2 <= radius**2
    chosen = torch.from_numpy(part).to(previous.device)
    merged = previous.clone()
    merged[0, 0][chosen] = new[0, 0].to(merged.device, merged.dtype)[chosen]
    return merged


def correct(
    decode: Decode, prompt: SlicePrompt, previous: torch.Tensor, clicks: int
) -> tuple[SlicePrompt, torch.Tensor, torch.Tensor]:
    """The last `clicks` clicks of `prompt` (box, clicks) applied one by one to the previous logits
    (1, 1, S, S), each decoded with the clicks up to it and the logits so far as mask prompt, and merged
    (`merge_click`) -> the prompt (with the final low-res logits), logits (1, 1, S, S) and predicted IoU (1,)."""
    points, labels = prompt.points or (), prompt.labels or ()
    logits, iou, box = previous, torch.ones(1), prompt.box
    for n in range(len(points) - clicks, len(points)):
        step = SlicePrompt(box, tuple(points[: n + 1]), tuple(labels[: n + 1]), low_res(logits))
        new, iou = decode(step, None)
        merged = merge_click(logits, new, points[n], labels[n])
        edited = edit_box(box, points[n], labels[n]) if merged is logits and box is not None else box
        if edited != box:  # the click was not taken: the box edited instead
            box = edited
            new, iou = decode(SlicePrompt(box, None, None, low_res(logits)), None)
            merged = merge_click(logits, new, points[n], labels[n])
        logits = merged
    return SlicePrompt(box, tuple(points), tuple(labels), low_res(logits)), logits, iou


def edit_box(box: Box, click: Sequence[float], label: int, margin: float = 3.0) -> Box:
    """A click the decoder did not take, as a box edit (what a box-trained model understands): a positive
    click grows the box to hold it (with `margin`), a negative one inside the box moves the box side nearest
    to it past it (the box unchanged where that would empty it)."""
    x0, y0, x1, y1 = box
    x, y = click
    if label == 0 and not (x0 <= x <= x1 and y0 <= y <= y1):
        return box
    if label == 1:
        return min(x0, x - margin), min(y0, y - margin), max(x1, x + margin), max(y1, y + margin)
    side = int(np.argmin([x - x0, y - y0, x1 - x, y1 - y]))
    edited = [x0, y0, x1, y1]
    edited[side] = (x, y)[side % 2] + (margin if side < 2 else -margin)
    if edited[0] > edited[2] or edited[1] > edited[3]:
        return box
    return edited[0], edited[1], edited[2], edited[3]


def seed(
    decode: Decode, prompt: SlicePrompt, sides: Sequence[float], mode: str, size: Sequence[int]
) -> tuple[SlicePrompt, torch.Tensor, torch.Tensor]:
    """A new object from clicks (`prompt` without a box, one foreground click at least) -> the prompt it
    is segmented with (the chosen box, all clicks), its logits (1, 1, S, S) and predicted IoU (1,)."""
    if mode not in CLICK_MODES:
        raise ValueError(f"click mode must be one of {CLICK_MODES}, got {mode!r}")
    points, labels = prompt.points or (), prompt.labels or ()
    first = next((p for p, v in zip(points, labels) if v == 1), None)
    if first is None:
        raise ValueError("a new object needs a foreground click (or a box)")
    click = SlicePrompt(None, (first,), (1,))
    if mode == "points":
        chosen, (logits, iou) = click, decode(click, None)
    else:
        boxes = candidate_boxes(first, sides, size)
        rows, ious = decode(click if mode == "boxes+points" else SlicePrompt(None), boxes)
        best = int(torch.argmax(ious))
        chosen = SlicePrompt(
            boxes[best], click.points if mode == "boxes+points" else None, (1,) if mode != "boxes" else None
        )
        logits, iou = rows[best : best + 1], ious[best : best + 1]
    if len(points) == 1:
        return chosen, logits, iou
    rest = list(range(len(points)))
    rest.remove(list(zip(points, labels)).index((first, 1)))
    ordered = SlicePrompt(chosen.box, (first, *(points[n] for n in rest)), (1, *(labels[n] for n in rest)))
    return correct(decode, ordered, logits, len(rest))
