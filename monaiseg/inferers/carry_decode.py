"""Prompting and decoding one slice of a box carry.

`correction_prompt`: the prompt a correction gives slice k (a box replaces it; clicks join the box and
clicks the slice was segmented with, its low-res logits as mask prompt; clicks where the object has no
mask start it there). `decode_slice`: every object carried onto slice j, from one encoding of the slice
(batched with the slices `ahead`); the objects prompted by a box alone in one decoder call, a click
seeding a new object by its candidate boxes (`click_seed.seed`), clicks correcting a result with its
previous low-res logits (`click_seed.correct`); a network without `encode_images` gets the slice and
every box in one call."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from monaiseg.inferers.box_carry_settings import BoxCarrySettings
from monaiseg.inferers.carry_records import CarryRecord, Chain
from monaiseg.inferers.click_seed import correct, low_res, seed
from monaiseg.inferers.session import SessionError
from monaiseg.inferers.slice_features import SliceFeatures
from monaiseg.inferers.slice_views import Box, Letterboxed, SlicePrompt, WholeSlice

Decoded = tuple[SlicePrompt, torch.Tensor, float | None, torch.Tensor | None]


def correction_prompt(
    records: dict[int, CarryRecord],
    obj: int,
    k: int,
    box: Box | None,
    points: tuple[tuple[float, float], ...] | None,
    labels: tuple[int, ...] | None,
) -> SlicePrompt:
    """Slice k's new prompt for object `obj` (its `records` per slice) from a correction's `box` (in the
    network's frame; None: clicks only) and clicks (`points`, `labels`; None: none)."""
    if box is not None:
        return SlicePrompt(box, points, labels)
    record = records.get(k)
    if record is None or record.mask is None:  # clicks where the object has no mask: a new start there
        if 1 not in (labels or ()):
            raise SessionError(f"object {obj} has no mask on slice {k}: start it there with a foreground click")
        handed = [r.next_box for r in (records.get(k - 1), records.get(k + 1)) if r]
        handed = [b for b in handed if b is not None]
        if handed:  # the box a neighbour hands on, kept whatever the IoU rule says: the user says it is there
            return SlicePrompt(handed[0])
        return SlicePrompt(None, points, labels)
    base = record.prompt  # clicks on a segmented slice: with the box and clicks it was segmented with
    return SlicePrompt(
        base.box,
        (base.points or ()) + (points or ()),
        (base.labels or ()) + (labels or ()),
        record.low_res,
        len(points or ()),
    )


def decode_slice(
    features: SliceFeatures | None,
    slices: WholeSlice | Letterboxed,
    view: torch.Tensor,
    settings: BoxCarrySettings,
    j: int,
    chains: list[Chain],
    ahead: list[int],
) -> list[Decoded]:
    """Per carry on slice j of `view` (C, H, W, D): the prompt it is segmented with (a click seeds its
    box), (H, W) logits, predicted IoU (None: not known) and low-res logits (None: not known)."""
    if features is not None:
        encoded = features  # narrowed for the decoder calls below
        out: list[Decoded] = []
        plain = [c for c in chains if c.prompt.box is not None and not c.prompt.points and c.prompt.mask is None]
        together: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if len(plain) > 1:  # rows of one decoder call (SAM's decoder runs each box on its own)
            logits, iou = encoded.decode(j, ahead, SlicePrompt(None), [c.prompt.box for c in plain])
            together = {id(c): (logits[n : n + 1], iou[n : n + 1]) for n, c in enumerate(plain)}
        for c in chains:
            if id(c) in together:
                prompt = c.prompt
                one, one_iou = together[id(c)]
            elif c.prompt.box is None:
                prompt, one, one_iou = seed(
                    lambda p, boxes: encoded.decode(j, ahead, p, boxes),
                    c.prompt,
                    settings.click_sides,
                    settings.click_mode,
                    slices.size,
                )
            elif c.prompt.mask is not None and c.prompt.fresh:  # clicks correcting the slice's result
                previous = F.interpolate(
                    c.prompt.mask[None].float(), size=slices.size, mode="bilinear", align_corners=False
                )
                prompt, one, one_iou = correct(
                    lambda p, boxes: encoded.decode(j, ahead, p, boxes), c.prompt, previous, c.prompt.fresh
                )
            else:
                prompt = c.prompt
                one, one_iou = encoded.decode(j, ahead, prompt)
            restored = slices.restore(one)[0, 0].float().cpu()
            out.append((prompt, restored, float(one_iou[0]), low_res(one)))
        return out
    if any(c.prompt.points or c.prompt.box is None for c in chains):
        raise SessionError("this network takes boxes only: correct with a box")
    boxes = [c.prompt.box for c in chains if c.prompt.box is not None]
    logits, ious = slices.masks(view[..., j], boxes)
    rows = logits[:, 0].float().cpu()
    return [(c.prompt, rows[n], None if ious is None else float(ious[n]), None) for n, c in enumerate(chains)]
