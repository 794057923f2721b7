"""Clicks on box-trained models: candidate boxes around a click, the one with the highest predicted IoU
seeds the object; further clicks correct it with the chosen box and the seed's logits as mask prompt;
the click protocol's error-region click."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monaiseg.inferers.click_seed import candidate_boxes, seed
from monaiseg.inferers.slice_views import SlicePrompt
from monaiseg.transforms.clicks import error_region_click


def test_candidate_boxes_are_squares_centred_on_the_click_clipped_to_the_input():
    assert candidate_boxes((100.0, 20.0), (0.25, 0.5), (256, 256)) == [
        (68.0, 0.0, 132.0, 52.0),  # side 64: y clipped at 0
        (36.0, 0.0, 164.0, 84.0),
    ]


class Decoder:
    """A stand-in decoder: predicted IoU per candidate box from `ious`, logits filled with the row index."""

    def __init__(self, ious):
        self.ious, self.calls = ious, []

    def __call__(self, prompt, boxes):
        self.calls.append((prompt, boxes))
        rows = len(boxes) if boxes else 1
        logits = torch.arange(rows, dtype=torch.float32)[:, None, None, None].expand(rows, 1, 8, 8).clone()
        return logits, torch.tensor(self.ious[:rows] if boxes else [0.5])


def test_the_box_with_the_highest_predicted_iou_seeds_the_object():
    decode = Decoder([0.2, 0.9, 0.4])
    prompt, logits, iou = seed(decode, SlicePrompt(None, ((4.0, 4.0),), (1,)), (0.25, 0.5, 1.0), "boxes", (8, 8))
    assert prompt == SlicePrompt((2.0, 2.0, 6.0, 6.0))  # side 4 around (4, 4): the box only, no click
    assert float(logits.max()) == 1.0 and iou.tolist() == pytest.approx([0.9])
    assert decode.calls[0][0] == SlicePrompt(None) and len(decode.calls[0][1]) == 3  # one call, all boxes


def test_more_clicks_correct_the_seed_with_its_box_and_logits():
    decode = Decoder([0.9, 0.1])
    clicks = SlicePrompt(None, ((4.0, 4.0), (1.0, 1.0), (6.0, 6.0)), (1, 0, 1))
    prompt, _, _ = seed(decode, clicks, (0.25, 0.5), "boxes", (8, 8))
    assert prompt.box == (3.0, 3.0, 5.0, 5.0) and prompt.points == clicks.points and prompt.labels == (1, 0, 1)
    assert prompt.mask.shape == (1, 256, 256) and float(prompt.mask.min()) == 0.0  # the seed's logits (row 0)
    assert len(decode.calls) == 2 and decode.calls[1] == (prompt, None)


def test_a_new_object_needs_a_foreground_click():
    with pytest.raises(ValueError, match="foreground click"):
        seed(Decoder([1.0]), SlicePrompt(None, ((1.0, 1.0),), (0,)), (0.5,), "boxes", (8, 8))


def test_error_region_click_is_at_the_centre_of_the_largest_error_region():
    gt = np.zeros((12, 12), bool)
    gt[2:9, 2:9] = True  # 7 x 7 object
    assert error_region_click(np.zeros_like(gt), gt) == (5, 5, 1)  # a miss: positive, at its centre
    pred = gt.copy()
    pred[2:9, 9:12] = True  # a 7 x 3 false positive against the border
    pred[0, 0] = True
    assert error_region_click(pred, gt) == (10, 5, 0)  # negative, farthest from the region's border
    assert error_region_click(gt, gt) == (0, 0, -1)
