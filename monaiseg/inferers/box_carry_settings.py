"""How box carry runs (`BoxCarrySettings`), defined once for the session (`box_carry_session`),
`box_carry_volume` and the inferer (`box_carry`)."""

from __future__ import annotations

from dataclasses import dataclass

from monaiseg.inferers.click_seed import CLICK_MODES, CLICK_SIDES

OVERLAP_RULES = ("logit", "order")


@dataclass(frozen=True)
class BoxCarrySettings:
    """How box carry runs (`monaiseg.inferers.box_carry`). box_margin: pixels a carried box grows on
    every side (whole slice); min_area: a mask of fewer pixels ends the carry; transpose: the network
    sees every slice with its two axes swapped; letterbox: S, LiteMedSAM's S x S input (None: the whole
    slice); overlap: "logit" (the higher logit wins) or "order" (the object given later); min_iou: a
    carried mask whose predicted IoU is below it is dropped and ends the carry (None: no IoU rule);
    encode_batch: slices per encoder call (None: 4 on a GPU, 1 on a CPU); click_mode, click_sides: how a
    click seeds a new object (`monaiseg.inferers.click_seed`); agree_iou: a correction's re-carry stops at
    the first slice whose new mask has this IoU with its old one (None: only where the boxes are equal)."""

    box_margin: float = 0.0
    min_area: int = 1
    transpose: bool = False
    letterbox: int | None = None
    overlap: str = "logit"
    min_iou: float | None = None
    encode_batch: int | None = None
    click_mode: str = "boxes"
    click_sides: tuple[float, ...] = CLICK_SIDES
    agree_iou: float | None = 0.9

    def __post_init__(self):
        if self.overlap not in OVERLAP_RULES:
            raise ValueError(f"overlap must be one of {OVERLAP_RULES}, got {self.overlap!r}")
        if self.click_mode not in CLICK_MODES:
            raise ValueError(f"click_mode must be one of {CLICK_MODES}, got {self.click_mode!r}")
