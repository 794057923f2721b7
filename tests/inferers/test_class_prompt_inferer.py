"""SurgicalSAM class-prompt decoding: class-map composition by mask quality and the presence rule."""

from __future__ import annotations

import torch

from monaiseg.inferers.class_prompt import compose_class_map, presence


def test_class_map_paints_kept_masks_in_increasing_quality():
    logits = -torch.ones(1, 3, 2, 3)
    logits[0, 0, 0, :] = 1  # class 5: top row
    logits[0, 1, :, 0] = 1  # class 6: left column (overlaps class 5 at (0, 0))
    logits[0, 2, 1, 2] = 1  # class 7: one pixel, not kept
    class_ids = torch.tensor([[5, 6, 7]])
    keep = torch.tensor([[True, True, False]])
    high_6 = compose_class_map(logits, torch.tensor([[0.2, 0.9, 1.0]]), class_ids, keep)
    assert high_6.tolist() == [[[6, 5, 5], [6, 0, 0]]]
    high_5 = compose_class_map(logits, torch.tensor([[0.9, 0.2, 1.0]]), class_ids, keep)
    assert high_5.tolist() == [[[5, 5, 5], [6, 0, 0]]]


def test_presence_rule_needs_area_and_mean_probability():
    logits = torch.full((1, 3, 10, 10), -5.0)
    logits[0, 0, :2] = 5.0  # 20 % of the frame, p = 0.993
    logits[0, 1, :2] = 0.5  # 20 %, p = 0.62
    logits[0, 2, 0, 0] = 5.0  # 1 %, p = 0.993
    assert presence(logits, min_area=0.05, min_prob=0.75).tolist() == [[True, False, False]]
    assert presence(logits, min_area=0.01, min_prob=0.6).tolist() == [[True, True, True]]
