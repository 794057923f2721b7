"""PEFT parts for SAM-family models: LoRA on fused q/k/v, decoder adapters, the density prompt
branch, BloodCellSAM2's `build_peft_sam2` and adapter-only weights, multi-object clips with
memory features, glob freezing policies.

A random-init sam2.1 tiny at image_size 64 is built once per module and deep-copied where a test
changes it."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from segment_anything.modeling.common import MLPBlock
from segment_anything.modeling.image_encoder import Block as SamViTBlock
from segment_anything.modeling.mask_decoder import MaskDecoder
from segment_anything.modeling.transformer import TwoWayTransformer
from torch import nn

from monaiseg.networks import (
    BLOODCELL_STAGE1_TRAINABLE,
    BLOODCELL_STAGE2_TRAINABLE,
    BottleneckAdapter,
    CheckpointMismatchError,
    DensityPromptEncoder,
    FusedQKVLoRA,
    add_mlp_adapters,
    add_qkv_lora,
    build_peft_sam2,
    build_sam2_segmenter,
    freeze_except,
    is_peft_key,
    load_peft_weights,
    load_state_dict_strict,
    merge_lora,
    merged_state_dict,
    peft_state_dict,
    save_peft_weights,
)
from monaiseg.networks.sam2_segmenter import IMAGENET_MEAN, IMAGENET_STD

SIZE = 64  # image embedding 4 x 4
BOXES = torch.tensor([[4.0, 6.0, 30.0, 34.0], [10.0, 2.0, 44.0, 40.0]])


@pytest.fixture(scope="module")
def base():
    torch.manual_seed(0)
    return build_sam2_segmenter("tiny", image_size=SIZE).eval()


@pytest.fixture(scope="module")
def foundation(base, tmp_path_factory):
    """`base` saved as an official-layout {'model': state_dict} file."""
    path = tmp_path_factory.mktemp("foundation") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": base.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def peft_model(foundation):
    return build_peft_sam2("tiny", SIZE, foundation_checkpoint=foundation).eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.rand(2, 1, 48, 48)


def randomize(params, std=0.5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in params:
            p.copy_(torch.randn(p.shape, generator=generator) * std)


# --------------------------------------------------------------------------- LoRA layer


def test_lora_layer_keeps_linear_keys_and_is_identity_at_init():
    torch.manual_seed(0)
    linear = nn.Linear(8, 24)
    lora = FusedQKVLoRA.from_linear(linear, rank=2, alpha=4, targets=("k", "q"))
    assert lora.targets == ("q", "k") and lora.scale == 2.0
    assert lora.weight is linear.weight and lora.bias is linear.bias  # shared, not copied
    assert set(lora.state_dict()) == {"weight", "bias", "lora_a.q", "lora_a.k", "lora_b.q", "lora_b.k"}
    assert lora.lora_a["q"].shape == (2, 8) and lora.lora_b["q"].shape == (8, 2)
    for t in ("q", "k"):
        assert torch.count_nonzero(lora.lora_b[t]) == 0
        a = lora.lora_a[t]
        assert a.abs().max() <= 1 / 8**0.5 and a.std() > 0.1  # Kaiming-uniform bound 1/sqrt(fan_in)
    x = torch.randn(3, 5, 8)
    assert torch.equal(lora(x), linear(x))


@pytest.mark.parametrize("targets", [("q", "k"), ("q", "v")])
def test_lora_changes_only_its_target_slices(targets):
    torch.manual_seed(0)
    linear = nn.Linear(8, 24)
    lora = FusedQKVLoRA.from_linear(linear, rank=2, alpha=4, targets=targets)
    linear.requires_grad_(False)
    optimizer = torch.optim.Adam([p for n, p in lora.named_parameters() if "lora_" in n], lr=0.05)
    target = torch.randn(16, 24)
    x = torch.randn(16, 8)
    for _ in range(20):
        optimizer.zero_grad()
        F.mse_loss(lora(x), target).backward()
        optimizer.step()
    assert all(torch.count_nonzero(lora.lora_b[t]) > 0 for t in targets)
    for x in (torch.randn(7, 8), torch.randn(2, 3, 8) * 10):
        with torch.no_grad():
            out, ref = lora(x).chunk(3, -1), linear(x).chunk(3, -1)
        for s, got, expected in zip("qkv", out, ref):
            if s in targets:
                assert (got - expected).abs().max() > 1e-3, s
            else:
                assert torch.equal(got, expected), s  # bit-identical: the update never touches it


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"out_features": 25}, r"3 \* d outputs, got 25"),
        ({"rank": 0}, r"rank must be >= 1"),
        ({"targets": ("q", "x")}, r"targets must be distinct"),
        ({"targets": ()}, r"targets must be distinct"),
        ({"targets": ("q", "q")}, r"targets must be distinct"),
    ],
)
def test_lora_layer_bad_arguments(kwargs, match):
    args = {"in_features": 8, "out_features": 24, "rank": 2, "alpha": 4, **kwargs}
    with pytest.raises(ValueError, match=match):
        FusedQKVLoRA(**args)


# --------------------------------------------------------------------------- LoRA injection


@pytest.mark.slow
@torch.no_grad()
def test_lora_goes_to_the_last_four_hiera_blocks_and_starts_as_identity(base, images):
    model = copy.deepcopy(base)
    blocks = model.image_encoder.trunk.blocks
    assert len(blocks) == 12  # tiny: stages 1 + 2 + 7 + 2
    names = add_qkv_lora(blocks, rank=4, alpha=8, last_n=4)
    assert names == ["8.attn.qkv", "9.attn.qkv", "10.attn.qkv", "11.attn.qkv"]
    assert [isinstance(b.attn.qkv, FusedQKVLoRA) for b in blocks] == [False] * 8 + [True] * 4
    assert all(type(b.attn.qkv) is nn.Linear for b in blocks[:8])
    keys, base_keys = list(model.state_dict()), list(base.state_dict())
    assert [k for k in keys if "lora_" not in k] == base_keys  # official keys, same order
    assert sorted(k for k in keys if "lora_" in k) == sorted(
        f"image_encoder.trunk.blocks.{i}.attn.qkv.lora_{ab}.{t}" for i in range(8, 12) for ab in "ab" for t in "qk"
    )
    assert torch.equal(model(images, boxes=BOXES), base(images, boxes=BOXES))  # B = 0 at init
    # in a real Hiera block (stage 4, 768 wide) trained LoRA moves q and k, never v
    randomize(blocks[11].attn.qkv.lora_b.values())
    x = torch.randn(1, 2, 2, 768)
    q, k, v = blocks[11].attn.qkv(x).chunk(3, -1)
    q0, k0, v0 = base.image_encoder.trunk.blocks[11].attn.qkv(x).chunk(3, -1)
    assert torch.equal(v, v0) and not torch.allclose(q, q0) and not torch.allclose(k, k0)

    with pytest.raises(ValueError, match="block 11 already has LoRA"):
        add_qkv_lora(blocks, rank=4, alpha=8, last_n=1)
    for last_n in (0, 13):
        with pytest.raises(ValueError, match=rf"last_n must be in 1\.\.12.*got {last_n}"):
            add_qkv_lora(base.image_encoder.trunk.blocks, rank=4, alpha=8, last_n=last_n)
    assert not any(isinstance(m, FusedQKVLoRA) for m in base.modules())  # errors changed nothing


def test_lora_on_segment_anything_vit_blocks():
    torch.manual_seed(0)
    blocks = nn.Sequential(*(SamViTBlock(dim=32, num_heads=2, window_size=4) for _ in range(3)))
    x = torch.randn(1, 8, 8, 32)
    with torch.no_grad():
        before = blocks(x)
        assert add_qkv_lora(blocks, rank=2, alpha=2, targets=("q", "v")) == ["0.attn.qkv", "1.attn.qkv", "2.attn.qkv"]
        assert torch.equal(blocks(x), before)
        randomize(p for n, p in blocks.named_parameters() if "lora_b" in n)
        assert not torch.allclose(blocks(x), before)
    assert blocks[0].attn.qkv.targets == ("q", "v")
    with pytest.raises(ValueError, match=r"block 0 \(Linear\) has no fused `attn.qkv`"):
        add_qkv_lora([nn.Linear(4, 12)], rank=2, alpha=2)


@pytest.mark.slow
@torch.no_grad()
def test_merge_equals_unmerged_and_restores_the_official_layout(base, images):
    model = copy.deepcopy(base)
    add_qkv_lora(model.image_encoder.trunk.blocks, rank=4, alpha=8, last_n=4)
    randomize(p for n, p in model.named_parameters() if "lora_b" in n)
    unmerged = model(images, boxes=BOXES)
    assert (unmerged - base(images, boxes=BOXES)).abs().max() > 5e-3  # LoRA really acts (merge error ~1e-7)
    state = merged_state_dict(model)
    assert list(state) == list(base.state_dict())

    merged = merge_lora(model)
    assert merged is model and not any(isinstance(m, FusedQKVLoRA) for m in model.modules())
    assert all(type(b.attn.qkv) is nn.Linear for b in model.image_encoder.trunk.blocks)
    assert list(model.state_dict()) == list(base.state_dict())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    torch.testing.assert_close(model(images, boxes=BOXES), unmerged, rtol=1e-5, atol=1e-5)
    # the merged weights are an official-layout SAM2 state dict: they load strictly into plain SAM2
    plain = copy.deepcopy(base)
    load_state_dict_strict(plain, state, source="merged")
    torch.testing.assert_close(plain(images, boxes=BOXES), unmerged, rtol=1e-5, atol=1e-5)


def test_merge_of_a_single_layer_returns_a_linear():
    torch.manual_seed(0)
    lora = FusedQKVLoRA(8, 24, rank=2, alpha=2, targets=("k",))
    randomize(lora.lora_b.values())
    linear = merge_lora(lora)
    assert type(linear) is nn.Linear and set(linear.state_dict()) == {"weight", "bias"}
    x = torch.randn(5, 8)
    torch.testing.assert_close(linear(x), lora(x), rtol=1e-5, atol=1e-5)
    assert torch.equal(linear.weight[:8], lora.weight[:8]) and torch.equal(linear.weight[16:], lora.weight[16:])


# --------------------------------------------------------------------------- adapters


def test_bottleneck_adapter_is_identity_then_residual():
    torch.manual_seed(0)
    adapter = BottleneckAdapter(16, 4)
    x = torch.randn(3, 16)
    assert torch.equal(adapter(x), x)
    randomize([adapter.up.weight], std=0.5)
    expected = x + adapter.up(F.gelu(adapter.down(x)))
    assert torch.equal(adapter(x), expected) and not torch.allclose(expected, x)


@torch.no_grad()
def test_decoder_adapters_keep_keys_and_outputs_at_init(base, images):
    model = copy.deepcopy(base)
    names = add_mlp_adapters(model.sam_mask_decoder, hidden_dim=8)
    assert names == ["transformer.layers.0.mlp.adapter", "transformer.layers.1.mlp.adapter"]
    keys = list(model.state_dict())
    assert [k for k in keys if ".adapter." not in k] == list(base.state_dict())
    assert sorted(k for k in keys if ".adapter." in k) == sorted(
        f"sam_mask_decoder.transformer.layers.{i}.mlp.adapter.{lin}.{p}"
        for i in range(2)
        for lin in ("down", "up")
        for p in ("weight", "bias")
    )
    assert model.sam_mask_decoder.transformer.layers[0].mlp.adapter.down.weight.shape == (8, 256)
    reference = base.predict_masks(images, boxes=BOXES)
    assert all(torch.equal(a, b) for a, b in zip(model.predict_masks(images, boxes=BOXES), reference))
    randomize([model.sam_mask_decoder.transformer.layers[1].mlp.adapter.up.weight], std=0.5)
    assert not torch.allclose(model(images, boxes=BOXES), reference[0])  # the hook applies it
    with pytest.raises(ValueError, match="layer 0 already has an adapter"):
        add_mlp_adapters(model.sam_mask_decoder, hidden_dim=8)
    with pytest.raises(ValueError, match="no `transformer.layers`"):
        add_mlp_adapters(model.image_encoder, hidden_dim=8)


def test_adapters_on_segment_anything_decoder():
    torch.manual_seed(0)
    decoder = MaskDecoder(
        transformer_dim=32, transformer=TwoWayTransformer(depth=2, embedding_dim=32, num_heads=2, mlp_dim=64)
    )
    keys = set(decoder.state_dict())
    assert add_mlp_adapters(decoder, hidden_dim=4) == [
        "transformer.layers.0.mlp.adapter",
        "transformer.layers.1.mlp.adapter",
    ]
    assert keys <= set(decoder.state_dict())
    mlp = decoder.transformer.layers[0].mlp
    assert isinstance(mlp, MLPBlock) and mlp.adapter.up.out_features == 32
    randomize([mlp.adapter.up.weight], std=0.5)
    x = torch.randn(2, 5, 32)
    plain = mlp.lin2(mlp.act(mlp.lin1(x)))
    assert torch.equal(mlp(x), mlp.adapter(plain)) and not torch.allclose(mlp(x), plain)


# --------------------------------------------------------------------------- density prior


def test_density_encoder_shapes_and_zero_init():
    torch.manual_seed(0)
    encoder = DensityPromptEncoder(embed_dim=256)
    out = encoder(torch.rand(2, 1, 37, 53), 4)
    assert out.shape == (2, 256, 4, 4) and torch.count_nonzero(out) == 0
    assert encoder(torch.rand(1, 1, 10, 10), (8, 6)).shape == (1, 256, 8, 6)
    with pytest.raises(ValueError, match=r"\(B, 1, h, w\), got \(2, 37, 53\)"):
        encoder(torch.rand(2, 37, 53), 4)
    with pytest.raises(ValueError, match="multiple of 4"):
        DensityPromptEncoder(hidden_channels=6)


@pytest.mark.slow
def test_density_branch_adds_to_the_dense_prompt(base, images):
    model = copy.deepcopy(base)
    density = torch.rand(2, 1, 24, 24)
    with torch.no_grad():
        reference = model(images, boxes=BOXES)
        with pytest.raises(ValueError, match="no density_encoder"):
            model(images, boxes=BOXES, density=density)
        model.density_encoder = DensityPromptEncoder(model.sam_prompt_encoder.embed_dim)
        assert torch.equal(model(images, boxes=BOXES), reference)
        assert torch.equal(model(images, boxes=BOXES, density=density), reference)  # zero last conv
        randomize([model.density_encoder.layers[-1].weight], std=0.5)
        assert torch.equal(model(images, boxes=BOXES), reference)  # no density: unchanged
        changed = model(images, boxes=BOXES, density=density)
        assert (changed - reference).abs().max() > 1e-2
        assert not torch.allclose(model(images, boxes=BOXES, density=density.flip(-1)), changed)
        with pytest.raises(ValueError, match="density has batch 3, the images 2"):
            model(images, boxes=BOXES, density=torch.cat([density, density[:1]]))
    assert "density_encoder" not in {k.split(".")[0] for k in base.state_dict()}
    model(images, boxes=BOXES, density=density).mean().backward()
    assert model.density_encoder.layers[0].weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- PEFT SAM2


def test_build_peft_sam2_loads_foundation_and_adds_every_part(base, peft_model):
    state = peft_model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in base.state_dict().items())  # official file loaded strictly
    peft = peft_state_dict(peft_model)
    assert set(peft) == set(state) - set(base.state_dict())
    assert all(is_peft_key(k) for k in peft) and not any(is_peft_key(k) for k in base.state_dict())
    groups = {
        "lora": [k for k in peft if ".lora_" in k],
        "adapter": [k for k in peft if ".adapter." in k],
        "density": [k for k in peft if k.startswith("density_encoder.")],
    }
    assert {g: len(v) for g, v in groups.items()} == {"lora": 16, "adapter": 8, "density": 10}
    assert sum(map(len, groups.values())) == len(peft)
    assert {k.split(".")[3] for k in groups["lora"]} == {"8", "9", "10", "11"}
    assert {k.rsplit(".", 1)[1] for k in groups["lora"]} == {"q", "k"}
    # BloodCellSAM2's z-score (0.45, 0.25) on [0, 1] input
    torch.testing.assert_close(
        peft_model.normalize_images(torch.full((1, 1, 8, 8), 0.5))[0, :, 0, 0], torch.full((3,), 0.2)
    )


@pytest.mark.slow
def test_freezing_policies_train_only_their_parameters(peft_model, images):
    model = copy.deepcopy(peft_model).train()
    freeze_except(model, BLOODCELL_STAGE1_TRAINABLE)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names == {n for n, _ in model.named_parameters() if is_peft_key(n)}
    freeze_except(model, BLOODCELL_STAGE2_TRAINABLE)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    memory_encoder = {n for n, _ in model.named_parameters() if n.startswith("memory_encoder.")}
    assert memory_encoder and names == {n for n, _ in model.named_parameters() if is_peft_key(n)} | memory_encoder

    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    static = model(images, boxes=BOXES, density=torch.rand(2, 1, 16, 16))
    out = model(torch.rand(1, 1, 48, 48, 2), boxes=BOXES, return_memory=True)
    loss = static.sigmoid().mean() + out["logits"].sigmoid().mean() + out["memory"].square().mean()
    loss.backward()
    optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed <= names  # frozen parameters are bit-identical
    for name in (
        "image_encoder.trunk.blocks.11.attn.qkv.lora_b.q",
        "image_encoder.trunk.blocks.8.attn.qkv.lora_b.k",
        "sam_mask_decoder.transformer.layers.0.mlp.adapter.up.weight",
        "density_encoder.layers.6.weight",
        "memory_encoder.out_proj.weight",
        "memory_encoder.fuser.layers.0.dwconv.weight",
    ):
        assert name in changed, name


@pytest.mark.slow
def test_peft_weights_round_trip(peft_model, foundation, images, tmp_path):
    model = copy.deepcopy(peft_model)
    randomize(p for n, p in model.named_parameters() if is_peft_key(n))
    density = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        expected = model(images, boxes=BOXES, density=density)
        assert (expected - peft_model(images, boxes=BOXES, density=density)).abs().max() > 1e-2
    path = save_peft_weights(model, tmp_path / "models" / "model_peft.pt")
    assert path == tmp_path / "models" / "model_peft.pt" and sorted(p.name for p in path.parent.iterdir()) == [
        "model_peft.pt"
    ]
    content = torch.load(path, weights_only=True)
    assert list(content) == ["model"] and set(content["model"]) == set(peft_state_dict(model))

    restored = build_peft_sam2("tiny", SIZE, foundation_checkpoint=str(foundation), checkpoint=str(path)).eval()
    full = tmp_path / "model.pt"
    torch.save({"model": model.state_dict()}, full)
    from_full = build_peft_sam2("tiny", SIZE, foundation_checkpoint="null", checkpoint=full).eval()
    fresh = copy.deepcopy(peft_model)
    assert load_peft_weights(fresh, path) is fresh
    with torch.no_grad():
        for other in (restored, from_full, fresh):
            assert torch.equal(other(images, boxes=BOXES, density=density), expected)


@pytest.mark.slow
def test_bad_peft_files_raise_naming_the_file(peft_model, foundation, tmp_path):
    state = peft_state_dict(peft_model)
    renamed = dict(state)
    renamed["density_encoder.layers.6.weigth"] = renamed.pop("density_encoder.layers.6.weight")
    path = tmp_path / "renamed.pt"
    torch.save({"model": renamed}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_peft_weights(copy.deepcopy(peft_model), path)
    message = str(info.value)
    assert str(path) in message
    assert "missing keys (1): density_encoder.layers.6.weight" in message
    assert "unexpected keys (1): density_encoder.layers.6.weigth" in message

    shaped = dict(state)
    shaped["image_encoder.trunk.blocks.8.attn.qkv.lora_a.q"] = torch.zeros(2, 384)
    path = tmp_path / "rank.pt"
    torch.save({"model": shaped}, path)
    with pytest.raises(
        CheckpointMismatchError,
        match=r"rank.pt.*\n.*shape mismatches \(1\): image_encoder.trunk"
        r".blocks.8.attn.qkv.lora_a.q \(2, 384\) != \(16, 384\)",
    ):
        build_peft_sam2("tiny", SIZE, foundation_checkpoint=foundation, checkpoint=path)

    foreign = {**state, "no_obj_ptr": torch.zeros(1, 256)}
    path = tmp_path / "foreign.pt"
    torch.save({"model": foreign}, path)
    with pytest.raises(CheckpointMismatchError, match=r"foreign.pt holds 1 non-PEFT keys.*no_obj_ptr"):
        load_peft_weights(copy.deepcopy(peft_model), path)
    # an official checkpoint given as our `checkpoint` (instead of the foundation) is named as such
    with pytest.raises(CheckpointMismatchError, match=r"sam2.1_hiera_tiny.pt has no LoRA.*foundation_checkpoint"):
        build_peft_sam2("tiny", SIZE, checkpoint=foundation)


@pytest.mark.slow
def test_merged_peft_model_loads_without_lora(peft_model, images):
    model = copy.deepcopy(peft_model)
    randomize(p for n, p in model.named_parameters() if is_peft_key(n))
    state = merged_state_dict(model)
    assert not any(".lora_" in k for k in state)
    assert {k for k in state if is_peft_key(k)} == {
        k for k in model.state_dict() if is_peft_key(k) and ".lora_" not in k
    }
    no_lora = build_peft_sam2("tiny", SIZE, lora=False).eval()
    load_state_dict_strict(no_lora, state, source="merged")
    with torch.no_grad():
        torch.testing.assert_close(no_lora(images, boxes=BOXES), model(images, boxes=BOXES), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- clips


@pytest.mark.slow
@torch.no_grad()
def test_one_clip_several_objects_equals_repeated_clip(base):
    torch.manual_seed(3)
    clip = torch.rand(1, 1, 48, 48, 3)
    shared = base(clip, boxes=BOXES)
    repeated = base(clip.expand(2, -1, -1, -1, -1), boxes=BOXES)
    assert shared.shape == (2, 1, 48, 48, 3)
    torch.testing.assert_close(shared, repeated, rtol=1e-5, atol=1e-5)
    assert (shared[0] - shared[1]).abs().max() > 1e-2  # two different objects
    with pytest.raises(ValueError, match="3 prompt rows for a batch of 2 clips"):
        base(clip.expand(2, -1, -1, -1, -1), boxes=torch.cat([BOXES, BOXES[:1]]))


@pytest.mark.slow
def test_return_memory_gives_differentiable_memory_features(base):
    model = copy.deepcopy(base)  # eval: no dropout in memory attention, so calls are comparable
    torch.manual_seed(4)
    clip = torch.rand(1, 1, 48, 48, 3)
    out = model(clip, boxes=BOXES, return_memory=True)
    assert set(out) == {"logits", "memory"}
    assert out["logits"].shape == (2, 1, 48, 48, 3)
    assert out["memory"].shape == (2, model.mem_dim, SIZE // 16, SIZE // 16, 3) and model.mem_dim == 64
    assert out["memory"].dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(out["logits"], model(clip, boxes=BOXES))  # memory on the last frame changes nothing
    # frame t's memory depends on frame t: a different last frame changes only the last memory
    other = clip.clone()
    other[..., 2] = torch.rand(1, 1, 48, 48)
    with torch.no_grad():
        memory = model(other, boxes=BOXES, return_memory=True)["memory"]
    torch.testing.assert_close(memory[..., :2], out["memory"][..., :2].detach())
    assert not torch.allclose(memory[..., 2], out["memory"][..., 2])
    out["memory"].square().mean().backward()
    grads = {n: p.grad for n, p in model.memory_encoder.named_parameters()}
    assert all(g is not None for g in grads.values())
    assert grads["out_proj.weight"].abs().sum() > 0 and grads["mask_downsampler.encoder.0.weight"].abs().sum() > 0
    with pytest.raises(ValueError, match="return_memory needs clips"):
        model(torch.rand(1, 1, 48, 48), boxes=BOXES[:1], return_memory=True)


# --------------------------------------------------------------------------- freezing patterns and normalisation


def test_freeze_except_glob_patterns(peft_model):
    model = copy.deepcopy(peft_model)
    names = [n for n, _ in model.named_parameters()]

    def trained(patterns):
        freeze_except(model, patterns)
        return {n for n, p in model.named_parameters() if p.requires_grad}

    assert trained(["*.lora_*"]) == {n for n in names if ".lora_" in n}
    assert trained(["sam_mask_decoder.*.adapter.*", "density_encoder"]) == {
        n for n in names if ".adapter." in n or n.startswith("density_encoder.")
    }
    assert trained(["image_encoder.trunk.blocks.1[01].*"]) == {
        n for n in names if n.startswith(("image_encoder.trunk.blocks.10.", "image_encoder.trunk.blocks.11."))
    }
    assert trained(["*.lora_?.q", "memory_encoder"]) == {
        n for n in names if (".lora_" in n and n.endswith(".q")) or n.startswith("memory_encoder.")
    }
    before = [p.requires_grad for p in model.parameters()]
    with pytest.raises(ValueError, match=r"\['\*\.lora_c\*'\] match no parameter"):
        freeze_except(model, ["*.lora_*", "*.lora_c*"])
    assert [p.requires_grad for p in model.parameters()] == before


def test_configurable_normalisation(peft_model):
    model = copy.deepcopy(peft_model)
    grey = torch.full((1, 1, 8, 8), 0.5)
    model.set_normalization(IMAGENET_MEAN, IMAGENET_STD)
    expected = [(0.5 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    torch.testing.assert_close(model.normalize_images(grey)[0, :, 3, 3], torch.tensor(expected))
    model.set_normalization([0.1, 0.2, 0.3], 0.5)
    torch.testing.assert_close(model.normalize_images(grey)[0, :, 3, 3], torch.tensor([0.8, 0.6, 0.4]))
    assert "pixel_mean" not in model.state_dict()
    for mean, std, match in (
        ([0.1, 0.2], 0.5, "pixel_mean must be one"),
        (0.5, 0.0, "pixel_std must be > 0"),
        (float("nan"), 0.5, "pixel_mean must be one finite"),
    ):
        with pytest.raises(ValueError, match=match):
            model.set_normalization(mean, std)
    torch.testing.assert_close(model.normalize_images(grey)[0, :, 3, 3], torch.tensor([0.8, 0.6, 0.4]))
