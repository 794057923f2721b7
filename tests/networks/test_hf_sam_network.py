"""HF-SAM network: LoRA on q/v only, AWFFM, two-step skip-feature decoding, switches, checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO

from monaiseg.networks.attention import ChannelAttention, SpatialAttention
from monaiseg.networks.awffm import AWFFM
from monaiseg.networks.checkpoint import CheckpointMismatchError
from monaiseg.networks.hf_sam import (
    build_hf_sam,
    hf_sam_adapter_state_dict,
    load_hf_sam_checkpoint,
    upstream_key_map,
)
from monaiseg.networks.lora import FusedQKVLoRA

from .checkpoint_manifests import manifest

TINY = {"image_size": 64, "encoder_depth": 2, "encoder_embed_dim": 64, "encoder_num_heads": 2}


def tiny(**kwargs):
    torch.manual_seed(0)
    return build_hf_sam(3, **{**TINY, **kwargs})


@pytest.fixture(scope="module")
def model():
    return tiny()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.rand(2, 1, 64, 64)


def samed_reference(model, images):
    """SAMed's path with segment-anything's own decoder: one image at a time, all K masks."""
    embeddings = model.image_encoder(model.normalize_images(images))
    sparse, dense = model.prompt_encoder(points=None, boxes=None, masks=None)
    return torch.cat(
        [
            model.mask_decoder.predict_masks(embeddings[b : b + 1], model.prompt_encoder.get_dense_pe(), sparse, dense)[
                0
            ]
            for b in range(len(images))
        ]
    )


@pytest.mark.slow
def test_outputs_and_training_steps(model, images):
    with torch.no_grad():
        logits = model(images)
    assert logits.shape == (2, 4, 64, 64)  # background + 3 classes at the input size
    model.train()
    try:
        steps = model(images)
    finally:
        model.eval()
    assert [tuple(s.shape) for s in steps] == [(2, 4, 64, 64), (2, 4, 16, 16)]
    assert torch.allclose(logits, steps[0], atol=1e-5)  # final step already at S = input size


@pytest.mark.slow
def test_lora_only_on_q_and_v(model, images):
    blocks = model.image_encoder.blocks
    assert all(isinstance(b.attn.qkv, FusedQKVLoRA) and b.attn.qkv.targets == ("q", "v") for b in blocks)
    assert all(b.attn.qkv.scale == 1.0 for b in blocks)  # SAMed: B A x without scaling
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    encoder = {n for n in trainable if n.startswith("image_encoder.")}
    assert encoder == {
        f"image_encoder.blocks.{i}.attn.qkv.lora_{ab}.{s}" for i in range(len(blocks)) for ab in "ab" for s in "qv"
    }
    assert {n.split(".")[0] for n in trainable} == {
        "image_encoder",
        "prompt_encoder",
        "mask_decoder",
        "awffm",
        "skip_decoder",
    }
    # non-zero B: only the q and v thirds of the fused projection change, k stays bit-identical
    qkv = blocks[0].attn.qkv
    x = torch.randn(3, qkv.in_features)
    plain = F.linear(x, qkv.weight, qkv.bias).chunk(3, -1)
    with torch.no_grad():
        for s in "qv":
            qkv.lora_b[s].normal_()
        adapted = qkv(x).chunk(3, -1)
        for s in "qv":
            qkv.lora_b[s].zero_()
    assert torch.equal(adapted[1], plain[1])
    assert not torch.allclose(adapted[0], plain[0]) and not torch.allclose(adapted[2], plain[2])
    # one optimiser step on every parameter: the frozen ones get no gradient and stay bit-identical
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    try:
        sum(s.square().mean() for s in model(images)).backward()
    finally:
        model.eval()
    optimizer.step()
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert frozen and all(torch.equal(before[n], model.get_parameter(n)) for n in frozen)
    assert not torch.equal(
        before["image_encoder.blocks.0.attn.qkv.lora_b.v"],
        model.get_parameter("image_encoder.blocks.0.attn.qkv.lora_b.v"),
    )
    model.load_state_dict({**model.state_dict(), **before})


@pytest.mark.slow
def test_switches_are_exact_identity_paths(images):
    model = tiny()
    with torch.no_grad():
        both = model.decode_steps(images)
        awffm, skip = model.awffm, model.skip_decoder
        model.skip_decoder = None
        one_step = model.decode_steps(images)
        model.awffm = None
        samed = model.decode_steps(images)
        reference = samed_reference(model, images)
        model.awffm, model.skip_decoder = awffm, skip
    assert torch.allclose(samed[0], reference, atol=1e-6)  # both off: SAMed exactly
    assert torch.allclose(one_step[0], both[1])  # step 1 does not depend on step 2
    assert (one_step[0] - samed[0]).abs().max() > 1e-3  # AWFFM changes the output
    assert both[0].shape[-1] == 4 * samed[0].shape[-1]
    coarse = F.interpolate(both[1], size=both[0].shape[-2:], mode="bilinear", align_corners=False)
    assert (both[0] - coarse).abs().max() > 1e-3  # the second step changes the output


def test_switched_off_builds_have_no_extra_modules():
    off = tiny(use_awffm="false", decoding_steps=1)
    assert off.awffm is None and off.skip_decoder is None
    assert not any(k.startswith(("awffm", "skip_decoder")) for k in off.state_dict())
    with pytest.raises(ValueError, match="decoding_steps"):
        tiny(decoding_steps=3)
    with pytest.raises(ValueError, match="awffm_block"):
        tiny(awffm_block=2)  # the tiny encoder has blocks 0 and 1


def test_awffm_matches_hand_computation():
    torch.manual_seed(2)
    module = AWFFM(low_channels=6, channels=4, reduction=2)
    low, high = torch.randn(2, 6, 5, 5), torch.randn(2, 4, 5, 5)
    compressed = F.conv2d(low, module.compress.weight, module.compress.bias)
    fused = F.conv2d(torch.cat([high, compressed], 1), module.fuse.weight, module.fuse.bias)
    pooled = torch.cat([fused.mean(1, keepdim=True), fused.amax(1, keepdim=True)], 1)
    a_s = torch.sigmoid(F.conv2d(pooled, module.spatial.conv.weight, module.spatial.conv.bias, padding=1))
    weighted = compressed * a_s
    mlp = module.channel.mlp
    a_c = torch.sigmoid(mlp(weighted.mean((2, 3), keepdim=True)) + mlp(weighted.amax((2, 3), keepdim=True)))
    assert torch.allclose(module(low, high), weighted + high * a_c, atol=1e-6)
    assert isinstance(module.spatial, SpatialAttention) and isinstance(module.channel, ChannelAttention)
    with pytest.raises(ValueError, match="one grid"):
        module(low, high[..., :4, :4])


def test_adapter_only_and_full_checkpoints_round_trip(model, images, tmp_path):
    adapter = hf_sam_adapter_state_dict(model)
    assert not any(k.startswith("image_encoder.") and ".lora_" not in k for k in adapter)
    torch.save({"model": adapter}, tmp_path / "adapter.pt")
    torch.save({"model": model.state_dict()}, tmp_path / "full.pt")
    with torch.no_grad():
        expected = model(images)
        for name in ("adapter.pt", "full.pt"):
            # the adapter-only file sits on the same (seeded) foundation encoder
            torch.manual_seed(0)
            loaded = build_hf_sam(3, checkpoint=str(tmp_path / name), **TINY)
            assert torch.allclose(loaded(images), expected, atol=1e-6)
    bad = dict(adapter)
    bad["mask_decoder.mask_tokens.weight"] = torch.zeros(7, 256)
    with pytest.raises(CheckpointMismatchError, match="mask_tokens"):
        load_hf_sam_checkpoint(tiny(), bad, "bad.pt")


@pytest.mark.parametrize("name,rank,ignored", [("samed_lora_vit_b_r4.json", 4, 0), ("hfsam_vit_b.json", 5, 293)])
def test_upstream_layouts_load_with_fake_tensors(name, rank, ignored):
    spec = manifest(name)
    torch.manual_seed(3)
    model = build_hf_sam(spec["num_classes"], image_size=spec["input_size"], lora_rank=rank)
    fake = {k: torch.randn(shape) for k, shape in spec["state_dict"].items()}
    mapping = upstream_key_map(list(fake), model)
    assert len(mapping) == spec["num_keys"]
    assert sum(v is None for v in mapping.values()) == ignored
    load_hf_sam_checkpoint(model, fake, name)
    kept = model.state_dict()
    for key, ours in mapping.items():
        if ours is not None:
            assert torch.equal(kept[ours], fake[key]), key
    # index i: block i // 2, q for even i, v for odd i
    assert torch.equal(model.image_encoder.blocks[3].attn.qkv.lora_a["v"], fake["w_a_007"])
    assert torch.equal(model.image_encoder.blocks[3].attn.qkv.lora_b["q"], fake["w_b_006"])
    if name.startswith("hfsam"):
        assert torch.equal(model.awffm.fuse.weight, fake["mask_decoder.Att.conv.weight"])
        assert torch.equal(model.awffm.compress.weight, fake["mask_decoder.compress_vit_feat.0.weight"])
        assert not model.awffm.spatial.conv.bias.any()


def test_upstream_rank_and_unknown_keys_are_clear_errors():
    spec = manifest("samed_lora_vit_b_r4.json")
    model = build_hf_sam(8, image_size=64, lora_rank=5, encoder_depth=2, encoder_embed_dim=64, encoder_num_heads=2)
    fake = {k: torch.zeros(s) for k, s in spec["state_dict"].items() if not k.startswith("w_")}
    fake.update({f"w_{ab}_{i:03d}": torch.zeros((4, 64) if ab == "a" else (64, 4)) for ab in "ab" for i in range(4)})
    with pytest.raises(CheckpointMismatchError, match="(?s)samed.pth.*rank 4, the model 5: set lora_rank 4"):
        load_hf_sam_checkpoint(model, fake, "samed.pth")
    with pytest.raises(CheckpointMismatchError, match="(?s)other.pth.*image_decoder.x"):
        load_hf_sam_checkpoint(model, {**fake, "image_decoder.x": torch.zeros(1)}, "other.pth")


def test_released_samed_checkpoint_loads():
    path = REPO / "bundles/hf_sam/models/epoch_159.pth"
    if not path.is_file():
        pytest.skip(f"{path} (SAMed's released LoRA file) not available")
    model = build_hf_sam(8, image_size=512, lora_rank=4, use_awffm=False, decoding_steps=1, checkpoint=str(path))
    assert model.image_encoder.blocks[0].attn.qkv.lora_b["q"].abs().sum() > 0
