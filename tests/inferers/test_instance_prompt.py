"""InstancePromptInferer / instance_ids (the cell bundles' instance prompting) with a stub box painter."""

from __future__ import annotations

import torch

from monaiseg.inferers import InstancePromptInferer, instance_ids


class BoxPainter(torch.nn.Module):
    """Stub segmenter: each box -> logits +5 inside, -5 outside; no prompt -> two fixed blobs."""

    def predict_masks(self, images, boxes=None, density=None):
        _, _, height, width = images.shape
        batch = images.shape[0] if boxes is None else len(boxes)
        logits = torch.full((batch, 1, height, width), -5.0)
        if boxes is None:
            logits[:, :, 2:5, 2:5] = 5
            logits[:, :, 10:14, 8:12] = 5
        else:
            for b, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
                logits[b, 0, y0 : y1 + 1, x0 : x1 + 1] = 5 + b  # later boxes win overlaps
        return logits, torch.ones(batch, 1)


def test_instance_ids_take_highest_positive_logit():
    logits = torch.tensor([[[[1.0, -1.0], [3.0, -2.0]]], [[[2.0, -1.0], [-1.0, -3.0]]]])  # (K=2, 1, 2, 2)
    assert instance_ids(logits).tolist() == [[2, 0], [1, 0]]


def test_instance_prompt_inferer_boxes_and_automatic():
    images = torch.zeros(1, 3, 16, 16)
    boxes = torch.tensor([[[1.0, 1.0, 4.0, 3.0], [3.0, 2.0, 6.0, 6.0], [float("nan")] * 4]])
    out = InstancePromptInferer()(images, BoxPainter(), boxes=boxes)
    assert out.shape == (1, 1, 16, 16)
    expected = torch.zeros(16, 16)
    expected[1:4, 1:5] = 1
    expected[2:7, 3:7] = 2  # the NaN row is padding, not an object
    assert torch.equal(out[0, 0], expected)
    auto = InstancePromptInferer()(images, BoxPainter())[0, 0]
    assert sorted(torch.unique(auto).tolist()) == [0, 1, 2] and auto[3, 3] != auto[11, 9]
