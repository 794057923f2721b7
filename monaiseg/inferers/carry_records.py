"""What a box-carry session stores per object and slice, to recompute only what a correction changes
and to undo it (`monaiseg.inferers.box_carry_session`), a carry in progress, and the rule composing a
slice's labels from its objects' records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from monaiseg.inferers.slice_views import Box, SlicePrompt


@dataclass
class CarryRecord:
    """An object's result on one slice: the chain direction and the prompt it was segmented with,
    whether its mask was kept (False: dropped by the IoU rule), the mask and its logits cropped to
    the mask's bounding box at (top, left) (None: empty), the box it hands to the next slice and its
    low-res logits (1, 256, 256) float16 in the network frame (a correction's mask prompt)."""

    reverse: bool
    prompted: bool
    prompt: SlicePrompt
    kept: bool
    next_box: Box | None
    top: int = 0
    left: int = 0
    mask: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    low_res: torch.Tensor | None = field(default=None, compare=False)

    def crop(self, mask: torch.Tensor, logits: torch.Tensor | None) -> CarryRecord:
        """Store the (H, W) mask (and its logits, when given) cropped to the mask's bounding box."""
        if mask.any():
            rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
            top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            self.top, self.left, self.mask = top, left, mask[top:bottom, left:right].clone()
            if logits is not None:
                self.logits = logits[top:bottom, left:right].clone()
        return self

    def nbytes(self) -> int:
        kept = (self.mask, self.logits, self.low_res)
        return sum(t.numel() * t.element_size() for t in kept if t is not None)


@dataclass
class CarryStep:
    """What one correction replaced, to undo it: the slice's prompt before (None: none) and every
    record it overwrote or removed (None: was absent)."""

    obj_id: int
    frame: int
    prompt: SlicePrompt | None
    records: dict[int, CarryRecord | None] = field(default_factory=dict)


@dataclass
class Chain:
    """A carry in progress: object, the slice it is at, direction, the prompt for that slice, whether
    it is the slice's own prompt, and how many slices it carried so far."""

    obj: int
    at: int
    reverse: bool
    prompt: SlicePrompt
    prompted: bool
    count: int = 0


def mask_iou(a: CarryRecord, b: CarryRecord) -> float:
    """IoU of two records' (cropped) masks on their slice; 0 when either is empty."""
    mask_a, mask_b = a.mask, b.mask
    if mask_a is None or mask_b is None:
        return 0.0
    top, left = min(a.top, b.top), min(a.left, b.left)
    bottom = max(a.top + mask_a.shape[0], b.top + mask_b.shape[0])
    right = max(a.left + mask_a.shape[1], b.left + mask_b.shape[1])
    canvas = torch.zeros((2, bottom - top, right - left), dtype=torch.bool)
    for n, (r, mask) in enumerate(((a, mask_a), (b, mask_b))):
        h, w = mask.shape
        canvas[n, r.top - top : r.top - top + h, r.left - left : r.left - left + w] = mask
    union = int((canvas[0] | canvas[1]).sum())
    return int((canvas[0] & canvas[1]).sum()) / union if union else 0.0


def compose_slice(objects: Sequence[tuple[int, CarryRecord | None]], height: int, width: int) -> torch.Tensor:
    """(H, W) float32 labels of one slice from (obj_id, record) of every object in the order given:
    where masks overlap, the higher logit wins (records with logits, `overlap="logit"`) or the object
    given later (records without, `overlap="order"`)."""
    labels = torch.zeros((height, width), dtype=torch.float32)
    best = torch.full((height, width), -torch.inf)
    for rank, (obj, record) in enumerate(objects):
        if record is None or record.mask is None:
            continue
        h, w = record.mask.shape
        region = (slice(record.top, record.top + h), slice(record.left, record.left + w))
        score = record.logits if record.logits is not None else torch.full((h, w), float(rank))
        area, top = labels[region], best[region]
        win = record.mask & (score > top)
        area[win] = float(obj)
        top[win] = score[win]
    return labels
