"""Clicks on box-trained models (MedSAM, LiteMedSAM): a new object from a click, and a click as a correction.

A new object from clicks (no box): the first foreground click seeds it. With `mode` "boxes" (the default,
chosen by `scripts/bench_click_protocol.py` on the shared real images, see bundles/lite_medsam/docs) the
decoder gets square candidate boxes centred on the click, of sides `sides` (fractions of the network
input's side S), in one call, and the box with the highest predicted IoU wins; "boxes+points" gives every
candidate the click too; "points" gives the click alone. Further clicks of the same request are then one
correction of that result. A correction (`SlicePrompt` with `mask`): all clicks, the current box and the
previous low-res logits as SAM's mask prompt.

`seed(decode, prompt, sides, mode, size)`: `decode(prompt, boxes)` is `SliceFeatures.decode` on one slice
(logits (K, 1, S, S) in the network frame and predicted IoU (K,)).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

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
    corrected = SlicePrompt(chosen.box, tuple(points), tuple(labels), low_res(logits))
    logits, iou = decode(corrected, None)
    return corrected, logits, iou
