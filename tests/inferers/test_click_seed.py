"""Clicks on box-trained models: candidate boxes around a click, the one with the highest predicted IoU
seeds the object; further clicks correct it with the chosen box and the seed's logits as mask prompt,
each changing at most its disk of the region it is in; the click protocol's error-region click."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monaiseg.inferers.click_seed import candidate_boxes, edit_box, merge_click, seed
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
        if not boxes:  # a correction: everything foreground
            logits += 1.0
        return logits, torch.tensor(self.ious[:rows] if boxes else [0.5])


def test_the_box_with_the_highest_predicted_iou_seeds_the_object():
    decode = Decoder([0.2, 0.9, 0.4])
    prompt, logits, iou = seed(decode, SlicePrompt(None, ((4.0, 4.0),), (1,)), (0.25, 0.5, 1.0), "boxes", (8, 8))
    assert prompt == SlicePrompt((2.0, 2.0, 6.0, 6.0))  # side 4 around (4, 4): the box only, no click
    assert float(logits.max()) == 1.0 and iou.tolist() == pytest.approx([0.9])
    assert decode.calls[0][0] == SlicePrompt(None) and len(decode.calls[0][1]) == 3  # one call, all boxes


def test_more_clicks_correct_the_seed_one_by_one_with_its_box_and_logits():
    decode = Decoder([0.9, 0.1])
    clicks = SlicePrompt(None, ((1.0, 1.0), (4.0, 4.0), (6.0, 6.0)), (0, 1, 1))
    prompt, _, _ = seed(decode, clicks, (0.25, 0.5), "boxes", (8, 8))
    # the first foreground click seeds, then the others in their order, each with the clicks up to it
    assert prompt.box == (3.0, 3.0, 5.0, 5.0) and prompt.points == ((4.0, 4.0), (1.0, 1.0), (6.0, 6.0))
    assert prompt.labels == (1, 0, 1) and prompt.mask.shape == (1, 256, 256)
    steps = [call[0] for call in decode.calls[1:]]
    assert [len(p.points) for p in steps] == [2, 3] and all(p.box == prompt.box for p in steps)
    assert all(p.mask is not None and call[1] is None for p, call in zip(steps, decode.calls[1:]))


def test_a_click_changes_only_the_region_it_is_in():
    previous = -torch.ones(1, 1, 8, 8)
    previous[0, 0, 2:5, 2:5] = 1.0
    new = -torch.ones(1, 1, 8, 8)
    new[0, 0, 2:5, 2:7] = 2.0  # grows to the right ...
    new[0, 0, 7, 0] = 2.0  # ... and adds a speck elsewhere
    merged = merge_click(previous, new, (6.0, 3.0), 1)
    expected = previous.clone()
    expected[0, 0, 2:5, 5:7] = 2.0  # only the part holding the click
    assert torch.equal(merged, expected)
    assert merge_click(previous, new, (0.0, 0.0), 0) is previous  # nothing flips under the click
    shrunk = merge_click(previous, -torch.ones(1, 1, 8, 8), (3.0, 3.0), 0)
    assert not (shrunk > 0).any()  # a negative click removes the part of the old mask it is in


def test_a_click_changes_at_most_its_disk_of_the_region():
    """A negative click 2 pixels inside the mask's lower edge, the decoder removing rows 3..7: only the
    removed pixels within 2 pixels of the click go."""
    previous = -torch.ones(1, 1, 12, 12)
    previous[0, 0, 1:8, 1:11] = 1.0  # rows 1..7, columns 1..10
    new = previous.clone()
    new[0, 0, 3:8, 1:11] = -3.0  # removes rows 3..7
    merged = merge_click(previous, new, (5.0, 6.0), 0)  # (x, y): 2 pixels from the mask's lower edge
    removed = (previous[0, 0] > 0) & ~(merged[0, 0] > 0)
    rows, cols = np.ogrid[:12, :12]
    disk = (rows - 6) ** 2 + (cols - 5) ** 2 <= 4
    assert torch.equal(removed, torch.from_numpy(disk & (rows >= 3) & (rows <= 7)))
    assert merged[0, 0, 6, 5] == -3.0 and merged[0, 0, 3, 1] == 1.0  # the click's pixel taken, far pixels kept
    grown = merge_click(-torch.ones(1, 1, 6, 6), torch.ones(1, 1, 6, 6), (2.0, 2.0), 1)
    assert (grown > 0).all()  # an empty previous mask: no bound, the whole region holding the click


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


def test_a_click_the_decoder_does_not_take_becomes_a_box_edit():
    assert edit_box((10.0, 10.0, 20.0, 20.0), (30.0, 12.0), 1) == (10.0, 9.0, 33.0, 20.0)  # grown to hold it
    assert edit_box((10.0, 10.0, 20.0, 20.0), (18.0, 15.0), 0) == (10.0, 10.0, 15.0, 20.0)  # right side past it
    assert edit_box((10.0, 10.0, 20.0, 20.0), (5.0, 5.0), 0) == (10.0, 10.0, 20.0, 20.0)  # outside: unchanged
