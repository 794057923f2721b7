"""Box carry decodes the objects prompted by a box alone on one slice in one mask-decoder call, with the labels
of decoding them one by one (LiteMedSAM with random weights, eager, one 64 x 64 slice, two objects)."""

from __future__ import annotations

import pytest
import torch

from monaiseg.inferers import box_carry_volume
from monaiseg.networks import build_lite_medsam
from monaiseg.prompts import ObjectPrompt


@pytest.mark.slow
def test_objects_of_a_slice_share_one_decoder_call():
    torch.manual_seed(0)
    network = build_lite_medsam(None)
    calls = []
    network.mask_decoder.register_forward_hook(
        lambda module, args, kwargs, out: calls.append(len(kwargs["sparse_prompt_embeddings"])), with_kwargs=True
    )
    volume = torch.rand(1, 64, 64, 1)
    prompts = [
        ObjectPrompt(obj_id=1, frame=0, box=(4, 4, 24, 30), frame_range=(0, 0)),
        ObjectPrompt(obj_id=2, frame=0, box=(36, 30, 60, 58), frame_range=(0, 0)),
    ]
    together = box_carry_volume(network, volume, prompts, letterbox=256, overlap="order")
    assert calls == [2]  # one call, two box rows
    alone = [box_carry_volume(network, volume, [p], letterbox=256, overlap="order") for p in prompts]
    assert calls == [2, 1, 1]
    expected = torch.where(alone[1] > 0, alone[1], alone[0])  # "order": the later object on top
    assert torch.equal(together, expected) and {0.0, 1.0, 2.0} >= set(together.unique().tolist())
