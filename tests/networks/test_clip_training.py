"""MedSAM2 2025 variant: differentiable tracking through clips (SAM2Segmenter on 5D clips)."""

from __future__ import annotations

import pytest
import torch

from monaiseg.networks import build_sam2_segmenter


@pytest.mark.slow
def test_forward_clip_tracks_with_memory_and_is_differentiable():
    torch.manual_seed(0)
    model = build_sam2_segmenter("tiny", 256).train()
    clips = torch.rand(2, 1, 48, 48, 3)
    logits = model(clips, boxes=torch.tensor([[10, 10, 30, 30], [5, 5, 20, 25]]))
    assert logits.shape == (2, 1, 48, 48, 3)
    logits.square().mean().backward()
    with_grad = {n.split(".")[0] for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert {"image_encoder", "memory_attention", "memory_encoder", "sam_mask_decoder"} <= with_grad
    with pytest.raises(ValueError, match="first frame"):
        model(clips)
