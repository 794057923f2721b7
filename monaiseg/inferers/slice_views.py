"""Slice geometry of box carry: how the network sees one slice of a volume, where its boxes and clicks
are, and the box a slice's mask hands to the next slice (`monaiseg.inferers.box_carry`).

`WholeSlice` (MedSAM): the slice as it is, boxes in slice pixels, the carried box the mask's tight box
grown by `box_margin` pixels. `Letterboxed` (LiteMedSAM): `monaiseg.transforms.medsam.Letterbox`'s S x S
input, key boxes scaled as upstream (truncated), the carried box the mask's box in that input grown by
3 pixels (upstream's `get_bbox256`), the logits brought back to the slice. Slices are (C, H, W), masks
(H, W), boxes (x0, y0, x1, y1) with x along W, inclusive pixel indices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from monaiseg.inferers.box_prompt import box_masks, letterbox_masks
from monaiseg.prompts import ObjectPrompt, mask_box
from monaiseg.transforms.medsam import Letterbox

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class SlicePrompt:
    """An object's prompt on one slice in the network's frame: box and clicks (x, y) with labels, and
    the slice's previous low-res logits (1, 256, 256) as SAM's mask prompt, of which the last `fresh`
    clicks are a correction (`monaiseg.inferers.click_seed.correct`; neither is compared)."""

    box: Box | None
    points: tuple[tuple[float, float], ...] | None = None
    labels: tuple[int, ...] | None = None
    mask: torch.Tensor | None = field(default=None, compare=False)
    fresh: int = field(default=0, compare=False)


def grow_box(box: Sequence[float], margin: float, height: int, width: int) -> Box:
    """(x0, y0, x1, y1) grown by `margin` pixels on every side, clipped to a height x width slice."""
    x0, y0, x1, y1 = box
    return (max(x0 - margin, 0.0), max(y0 - margin, 0.0), min(x1 + margin, width - 1.0), min(y1 + margin, height - 1.0))


def prompt_box(prompt: ObjectPrompt, swap: bool) -> Box:
    """The prompt's box (x0, y0, x1, y1), its axes swapped for a transposed slice."""
    if prompt.box is None:
        raise ValueError(f"object {prompt.obj_id}: no box")
    x0, y0, x1, y1 = prompt.box
    return (y0, x0, y1, x1) if swap else (x0, y0, x1, y1)


def check_box_prompts(prompts: Sequence[ObjectPrompt], depth: int, height: int, width: int) -> None:
    """Box or click prompts (a click seeds a box: `monaiseg.inferers.click_seed`), one per (object,
    slice), checked against the volume; an object with a slice range has one prompt."""
    if not prompts:
        raise ValueError("no box prompts to segment")
    seen: dict[int, list[ObjectPrompt]] = {}
    for prompt in prompts:
        prompt.validate(num_frames=depth, height=height, width=width)
        if prompt.mask is not None:
            raise ValueError(f"object {prompt.obj_id}: box carry takes a box or clicks, not a mask")
        if prompt.box is None and 1 not in (prompt.point_labels or ()):
            raise ValueError(f"object {prompt.obj_id}: a new object needs a box or a foreground click")
        given = seen.setdefault(prompt.obj_id, [])
        if any(p.frame == prompt.frame for p in given):
            raise ValueError(f"object {prompt.obj_id}: more than one box on slice {prompt.frame}")
        given.append(prompt)
        if len(given) > 1 and any(p.frame_range is not None for p in given):
            raise ValueError(f"object {prompt.obj_id}: a box with a slice range (3D box) is the object's only prompt")


class WholeSlice:
    """MedSAM: the network sees the whole slice; boxes in slice pixels."""

    def __init__(self, network, height: int, width: int, box_margin: float, min_area: int):
        self.network, self.height, self.width = network, height, width
        self.box_margin, self.min_area = box_margin, min_area

    @property
    def size(self) -> tuple[int, int]:
        """(h, w) of the network input."""
        return self.height, self.width

    def key_box(self, box: Sequence[float]) -> Box:
        x0, y0, x1, y1 = box
        return x0, y0, x1, y1

    def point(self, x: float, y: float) -> tuple[float, float]:
        return float(x), float(y)

    def next_box(self, mask: np.ndarray, obj_id: int) -> Box | None:
        if int(mask.sum()) < self.min_area:
            return None
        return grow_box(mask_box(mask), self.box_margin, self.height, self.width)

    def input(self, image: torch.Tensor) -> torch.Tensor:
        """The network input (C, h, w) of one slice (C, H, W)."""
        return image

    def restore(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (K, M, h, w) of the network input back to the slice's (K, M, H, W)."""
        return logits

    def masks(self, image: torch.Tensor, boxes: Sequence[Box]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (K, 1, H, W) and predicted IoU (K,) or None for one slice (C, H, W)."""
        return box_masks(self.network, image[None], torch.tensor(boxes, dtype=torch.float32, device=image.device))


class Letterboxed(WholeSlice):
    """LiteMedSAM: the network sees the letterboxed slice; boxes in the S x S input."""

    def __init__(self, network, height: int, width: int, size: int, min_area: int):
        super().__init__(network, height, width, 0.0, min_area)
        self.frame = Letterbox(height, width, size)

    @property
    def size(self) -> tuple[int, int]:
        return self.frame.size, self.frame.size

    def key_box(self, box: Sequence[float]) -> Box:
        return self.frame.box(box)

    def point(self, x: float, y: float) -> tuple[float, float]:
        return float(x) * self.frame.ratio, float(y) * self.frame.ratio

    def next_box(self, mask: np.ndarray, obj_id: int) -> Box | None:
        return None if int(mask.sum()) < self.min_area else self.frame.mask_box(mask, obj_id)

    def input(self, image: torch.Tensor) -> torch.Tensor:
        return self.frame.image(image)

    def restore(self, logits: torch.Tensor) -> torch.Tensor:
        return self.frame.restore(logits)

    def masks(self, image: torch.Tensor, boxes: Sequence[Box]) -> tuple[torch.Tensor, torch.Tensor | None]:
        return letterbox_masks(self.network, image, boxes, self.frame)
