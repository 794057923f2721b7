"""SAMSegmenter / build_sam_segmenter (SAM v1, MedSAM, SAM-Med2D): official key layouts,
SAM-Med2D adapters, 1024 -> 256 weight port, strict loading errors, the optimizer-pickled
SAM-Med2D release, and the forward contract shared with SAM2Segmenter.

Full-size models are built on the meta device (no memory); everything that runs uses a tiny
ViT (depth 2-4, width 64) at image_size 64."""

from __future__ import annotations

import copy
import logging
import runpy

import pytest
import torch
import torch.nn.functional as F
from conftest import REPO
from segment_anything import sam_model_registry

from monaiseg.networks import (
    SAM_VARIANTS,
    CheckpointMismatchError,
    SAMMed2DAdapter,
    SAMSegmenter,
    add_sam_med2d_adapters,
    build_sam_segmenter,
    default_global_attn_indexes,
    extract_sam_med2d_weights,
    freeze_except,
    load_sam_checkpoint,
    resize_sam_state_dict,
)

from .checkpoint_manifests import manifest

SIZE = 64
TINY = {"encoder_depth": 2, "encoder_embed_dim": 64, "encoder_num_heads": 4, "encoder_global_attn_indexes": [1]}
# depth 4 with global blocks 1 and 3: windowed and global blocks, as in ViT-B
TINY_PORT = {"encoder_depth": 4, "encoder_embed_dim": 64, "encoder_num_heads": 4, "encoder_global_attn_indexes": [1, 3]}
ADAPTER_PARTS = [
    "norm.weight",
    "norm.bias",
    "channel.0.weight",
    "channel.2.weight",
    "spatial.0.weight",
    "spatial.2.weight",
]


def shapes(state_dict) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in state_dict.items()}


def randomised(state_dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every tensor filled with random values (random-init SAM has zero pos_embed / rel_pos)."""
    gen = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=gen) for k, v in state_dict.items()}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_sam_segmenter("vit_b", image_size=SIZE, **TINY)


@pytest.fixture(scope="module")
def med2d():
    torch.manual_seed(1)
    return build_sam_segmenter("vit_b", image_size=SIZE, encoder_adapter=True, **TINY)


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(2)
    return torch.rand(2, 1, 50, 70)


# --------------------------------------------------------------------------- official layouts


@pytest.mark.parametrize("variant", sorted(SAM_VARIANTS))
def test_variants_equal_segment_anything_build(variant):
    """At 1024 our build has exactly the keys, shapes and order of segment-anything's registry."""
    with torch.device("meta"):
        upstream = sam_model_registry[variant]()
    ours = build_sam_segmenter(variant, device="meta")
    assert isinstance(ours, SAMSegmenter) and ours.image_size == 1024
    assert list(shapes(ours.state_dict()).items()) == list(shapes(upstream.state_dict()).items())
    windowed = [b.window_size for b in ours.image_encoder.blocks]
    assert [i for i, w in enumerate(windowed) if w == 0] == list(SAM_VARIANTS[variant]["global_attn_indexes"])
    assert set(windowed) == {0, 14}


def test_default_global_attention_reproduces_official_indexes():
    for spec in SAM_VARIANTS.values():
        assert default_global_attn_indexes(spec["depth"]) == spec["global_attn_indexes"]
    assert default_global_attn_indexes(2) == (0, 1)
    assert default_global_attn_indexes(3) == (0, 1, 2)
    net = build_sam_segmenter("vit_b", image_size=SIZE, encoder_depth=3, encoder_embed_dim=48, device="meta")
    assert [b.window_size for b in net.image_encoder.blocks] == [0, 0, 0]


@pytest.mark.parametrize(
    "name, variant, adapter, size",
    [
        ("sam_vit_b.json", "vit_b", False, 1024),
        ("medsam_vit_b.json", "vit_b", False, 1024),
        ("sam_vit_h.json", "vit_h", False, 1024),
        ("sam_med2d_vit_b.json", "vit_b", True, 256),
    ],
)
def test_state_dict_matches_official_manifest(name, variant, adapter, size):
    official = manifest(name)
    net = build_sam_segmenter(variant, image_size=size, encoder_adapter=adapter, device="meta")
    ours = shapes(net.state_dict())
    expected = {k: list(v) for k, v in official["state_dict"].items()}
    assert len(expected) == official["num_keys"]
    assert set(ours) == set(expected), (
        f"missing {sorted(set(expected) - set(ours))[:5]}, extra {sorted(set(ours) - set(expected))[:5]}"
    )
    assert ours == expected
    assert list(ours) == list(expected)  # same order as in the file
    assert sum(v.numel() for v in net.state_dict().values()) == official["num_params"]
    assert "pixel_mean" not in ours and "pixel_std" not in ours  # non-persistent, as in Sam
    assert net.prompt_encoder.image_embedding_size == (size // 16, size // 16)
    assert net.prompt_encoder.mask_input_size == (size // 4, size // 4)


def test_sam_med2d_has_an_adapter_in_every_block():
    official = manifest("sam_med2d_vit_b.json")
    net = build_sam_segmenter("vit_b", image_size=256, encoder_adapter=True, device="meta")
    for i, block in enumerate(net.image_encoder.blocks):
        assert isinstance(block.Adapter, SAMMed2DAdapter), i
        keys = [k for k in net.state_dict() if k.startswith(f"image_encoder.blocks.{i}.Adapter.")]
        assert keys == [f"image_encoder.blocks.{i}.Adapter.{part}" for part in ADAPTER_PARTS]
    adapter_keys = [k for k in net.state_dict() if ".Adapter." in k]
    assert len(adapter_keys) == official["keys_added_vs_sam_vit_b"] == 72
    n_adapter = sum(p.numel() for n, p in net.named_parameters() if ".Adapter." in n)
    assert n_adapter == official["num_adapter_params"]
    with pytest.raises(ValueError, match="already has SAM-Med2D adapters"):
        add_sam_med2d_adapters(net.image_encoder)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"variant": "vit_g"}, r"unknown SAM variant 'vit_g'.*vit_b.*vit_h.*vit_l"),
        ({"image_size": 1000}, r"multiple of 16, got 1000"),
        ({"image_size": 0}, r"multiple of 16, got 0"),
        ({"encoder_embed_dim": 100}, r"100 is not divisible by 12 heads"),
        ({"encoder_depth": 2, "encoder_global_attn_indexes": [1, 2]}, r"\[1, 2\] must lie in 0..1"),
    ],
)
def test_bad_build_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_sam_segmenter(**{"device": "meta", **kwargs})


# --------------------------------------------------------------------------- SAM-Med2D adapter


def test_adapter_runs_in_parallel_with_the_mlp(med2d):
    """Block output = x + attn + mlp(norm2(.)) + Adapter(norm2(.)), the adapter being
    LayerNorm(n + relu(convT(relu(conv(gate * n))))) with gate = sigmoid(W2 relu(W1 mean(n)))."""
    torch.manual_seed(3)
    block = copy.deepcopy(med2d.image_encoder.blocks[1])  # global attention: no window partition
    assert block.window_size == 0
    ad = block.Adapter
    with torch.no_grad():
        for p in ad.parameters():  # SAM-Med2D's init has LayerNorm 1/0: make every weight matter
            p.copy_(torch.randn_like(p) * 0.1)
        x = torch.randn(2, 4, 4, 64)
        mid = x + block.attn(block.norm1(x))
        n = block.norm2(mid)
        gate = torch.sigmoid(F.linear(F.relu(F.linear(n.mean(dim=(1, 2)), ad.channel[0].weight)), ad.channel[2].weight))
        y = n.permute(0, 3, 1, 2) * gate[:, :, None, None]
        y = F.relu(F.conv2d(y, ad.spatial[0].weight, stride=2, padding=1))
        y = F.relu(F.conv_transpose2d(y, ad.spatial[2].weight, stride=2, padding=1))
        adapter = F.layer_norm(n + y.permute(0, 2, 3, 1), (64,), ad.norm.weight, ad.norm.bias, eps=1e-5)
        plain_mlp = block.mlp.lin2(block.mlp.act(block.mlp.lin1(n)))
        torch.testing.assert_close(ad(n), adapter)
        torch.testing.assert_close(block(x), mid + plain_mlp + adapter)
        assert (adapter.abs() > 1e-3).any()
        # odd token grids (e.g. image_size 80 -> 5 x 5) keep their size
        assert ad(torch.randn(1, 5, 5, 64)).shape == (1, 5, 5, 64)


def test_deepcopy_uses_the_copied_adapters(med2d, images):
    clone = copy.deepcopy(med2d)
    with torch.no_grad():
        assert torch.equal(clone(images[:1]), med2d(images[:1]))
        clone.image_encoder.blocks[0].Adapter.norm.bias.add_(1.0)
        assert not torch.allclose(clone(images[:1]), med2d(images[:1]))


# --------------------------------------------------------------------------- forward contract


@pytest.mark.slow
@torch.no_grad()
def test_predict_masks_shapes_for_every_prompt_kind(model, images):
    boxes = torch.tensor([[5.0, 10.0, 40.0, 45.0], [0.0, 0.0, 69.0, 49.0]])
    points = torch.tensor([[[20.0, 30.0], [60.0, 5.0]], [[3.0, 3.0], [0.0, 0.0]]])
    point_labels = torch.tensor([[1, 0], [1, -1]])
    mask_inputs = torch.full((2, 1, 50, 70), 5.0)
    none, none_iou = model.predict_masks(images)
    assert none.shape == (2, 1, 50, 70) and none_iou.shape == (2, 1)  # the input size, not image_size
    assert torch.equal(model(images), none)
    for prompts in (
        {"boxes": boxes},
        {"points": points, "point_labels": point_labels},
        {"mask_inputs": mask_inputs},
        {"boxes": boxes, "points": points, "point_labels": point_labels},
    ):
        logits, iou = model.predict_masks(images, **prompts)
        assert logits.shape == (2, 1, 50, 70) and iou.shape == (2, 1), prompts.keys()
        assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
        assert not torch.allclose(logits, none), prompts.keys()  # the prompt reached the decoder
    logits, iou = model.predict_masks(images, boxes=boxes, multimask_output=True)
    assert logits.shape == (2, 3, 50, 70) and iou.shape == (2, 3)


@torch.no_grad()
def test_matches_upstream_sam_forward(model):
    """At image_size (no resize) our logits / IoU equal Meta's Sam.forward on [0, 255] pixels with
    its own ImageNet statistics, sharing the same modules (K boxes on one image)."""
    from segment_anything.modeling import Sam

    upstream = Sam(model.image_encoder, model.prompt_encoder, model.mask_decoder).eval()
    torch.manual_seed(4)
    image = torch.rand(1, 3, SIZE, SIZE)
    boxes = torch.tensor([[4.0, 8.0, 40.0, 50.0], [10.0, 2.0, 60.0, 30.0]])
    ref = upstream([{"image": image[0] * 255, "original_size": (SIZE, SIZE), "boxes": boxes}], multimask_output=True)[0]
    logits, iou = model.predict_masks(image, boxes=boxes, multimask_output=True)
    expected = F.interpolate(ref["low_res_logits"], (SIZE, SIZE), mode="bilinear", align_corners=False)
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(iou, ref["iou_predictions"], rtol=1e-4, atol=1e-5)
    confident = logits.abs() > 1e-3  # Sam thresholds its own logits at 0: agree away from ties
    assert torch.equal((logits > 0)[confident], ref["masks"][confident])


@torch.no_grad()
def test_prompt_free_decoding_uses_no_sparse_token(model, images):
    """No prompt: an empty sparse prompt and the no-mask dense embedding, for every image."""
    seen = []
    handle = model.mask_decoder.register_forward_pre_hook(
        lambda m, args, kwargs: seen.append((kwargs["sparse_prompt_embeddings"], kwargs["dense_prompt_embeddings"])),
        with_kwargs=True,
    )
    try:
        model.predict_masks(images)
    finally:
        handle.remove()
    assert len(seen) == 2  # one decoder call per image
    no_mask = model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(1, -1, 4, 4)
    for sparse, dense in seen:
        assert sparse.shape == (1, 0, 256)
        assert torch.equal(dense, no_mask)


@torch.no_grad()
def test_one_image_several_objects_equals_repeated_images(med2d, images):
    boxes = torch.tensor([[5.0, 10.0, 40.0, 45.0], [20.0, 5.0, 60.0, 30.0], [0.0, 0.0, 69.0, 49.0]])
    calls = []
    handle = med2d.image_encoder.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    try:
        shared, shared_iou = med2d.predict_masks(images[:1], boxes=boxes)
        repeated, repeated_iou = med2d.predict_masks(images[:1].expand(3, -1, -1, -1), boxes=boxes)
    finally:
        handle.remove()
    assert calls == [1, 3]  # the shared image is encoded once
    assert shared.shape == (3, 1, 50, 70)
    torch.testing.assert_close(shared, repeated, rtol=0, atol=1e-4)
    torch.testing.assert_close(shared_iou, repeated_iou, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="3 prompt rows for a batch of 2 images"):
        med2d.predict_masks(images, boxes=boxes)


@torch.no_grad()
def test_grey_input_equals_three_copies(model, images):
    boxes = torch.tensor([[5.0, 10.0, 40.0, 45.0]])
    torch.testing.assert_close(
        model(images[:1], boxes=boxes), model(images[:1].repeat(1, 3, 1, 1), boxes=boxes), rtol=0, atol=1e-6
    )


@torch.no_grad()
def test_prompts_are_scaled_from_input_pixels_to_image_size(model):
    """A 50 x 100 (H x W) input is resized to 64 x 64: x scales by 0.64, y by 1.28."""
    seen = {}
    handle = model.prompt_encoder.register_forward_pre_hook(
        lambda m, args, kwargs: seen.update(kwargs), with_kwargs=True
    )
    try:
        model.predict_masks(
            torch.rand(1, 1, 50, 100),
            boxes=torch.tensor([[10.0, 20.0, 30.0, 40.0]]),
            points=torch.tensor([[[50.0, 25.0]]]),
            point_labels=torch.tensor([[1]]),
        )
    finally:
        handle.remove()
    torch.testing.assert_close(seen["boxes"], torch.tensor([[6.4, 25.6, 19.2, 51.2]]))
    torch.testing.assert_close(seen["points"][0], torch.tensor([[[32.0, 32.0]]]))
    assert seen["points"][1].tolist() == [[1]]


@torch.no_grad()
def test_normalisation_imagenet_by_default_and_medsam_identity(model):
    out = model.normalize_images(torch.full((1, 1, 40, 30), 0.5))
    assert out.shape == (1, 3, SIZE, SIZE)
    expected = [(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]
    torch.testing.assert_close(out[0, :, 7, 9], torch.tensor(expected))
    medsam = build_sam_segmenter("vit_b", image_size=SIZE, pixel_mean=0.0, pixel_std=1.0, **TINY)
    image = torch.rand(1, 3, SIZE, SIZE)
    assert torch.equal(medsam.normalize_images(image), image)  # MedSAM: [0, 1] straight to the encoder
    with pytest.raises(ValueError, match="pixel_std must be > 0"):
        medsam.set_normalization(0.0, 0.0)


@pytest.mark.parametrize(
    "shape, prompts, match",
    [
        ((2, 2, 32, 32), {}, r"\(B, 1\|3, H, W\)"),
        ((1, 32, 32), {}, r"\(B, 1\|3, H, W\)"),
        ((1, 1, 32, 32), {"points": torch.tensor([[[3.0, 4.0]]])}, "point_labels"),
        ((1, 1, 32, 32), {"density": torch.rand(1, 1, 8, 8)}, "no density_encoder"),
        ((2, 1, 32, 32), {"mask_inputs": torch.rand(1, 1, 32, 32)}, "mask_inputs has 1 rows for 2"),
    ],
)
def test_bad_inputs_raise(model, shape, prompts, match):
    with pytest.raises(ValueError, match=match), torch.no_grad():
        model(torch.rand(shape), **prompts)


# --------------------------------------------------------------------------- training


def _grad_mode_of_encoder(net, images, boxes):
    modes = []
    handle = net.image_encoder.register_forward_hook(lambda m, i, o: modes.append(torch.is_grad_enabled()))
    try:
        net(images, boxes=boxes).sigmoid().mean().backward()
    finally:
        handle.remove()
    return modes


@pytest.mark.slow
def test_frozen_encoder_runs_without_grad_and_gets_none():
    net = build_sam_segmenter("vit_b", image_size=SIZE, encoder_adapter=True, **TINY)
    box = torch.tensor([[4.0, 4.0, 30.0, 40.0]])
    freeze_except(net, ["mask_decoder"])
    assert _grad_mode_of_encoder(net, torch.rand(1, 1, 48, 48), box) == [False]
    with_grad = {n for n, p in net.named_parameters() if p.grad is not None}
    assert with_grad and all(n.startswith("mask_decoder.") for n in with_grad)
    assert "mask_decoder.output_upscaling.0.weight" in with_grad

    net.zero_grad(set_to_none=True)
    freeze_except(net, ["*.Adapter.*", "mask_decoder"])  # SAM-Med2D: adapters + decoder trained
    assert _grad_mode_of_encoder(net, torch.rand(1, 1, 48, 48), box) == [True]
    encoder_grads = {n for n, p in net.named_parameters() if p.grad is not None and n.startswith("image_encoder.")}
    assert "image_encoder.blocks.0.Adapter.spatial.0.weight" in encoder_grads
    assert all(".Adapter." in n for n in encoder_grads)


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture(scope="module")
def sam1024(tmp_path_factory):
    """A tiny ViT 'trained at 1024' with random values everywhere, in the official flat layout."""
    net = build_sam_segmenter("vit_b", image_size=1024, **TINY_PORT)
    state = randomised(net.state_dict())
    path = tmp_path_factory.mktemp("sam1024") / "sam_vit_b_tiny.pth"
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("size, rel_len", [(256, 31), (512, 63)])
def test_port_1024_weights_resizes_only_position_tables(sam1024, size, rel_len):
    path, source = sam1024
    net = build_sam_segmenter("vit_b", image_size=size, checkpoint=path, **TINY_PORT)
    got = net.state_dict()
    grid = size // 16
    resized = {"image_encoder.pos_embed"} | {f"image_encoder.blocks.{i}.attn.rel_pos_{a}" for i in (1, 3) for a in "hw"}
    for key, value in source.items():
        if key not in resized:
            assert torch.equal(got[key], value), key  # every other tensor identical
    assert got["image_encoder.pos_embed"].shape == (1, grid, grid, 64)
    # SAM-Med2D / SAMed's formulas: bilinear over the grid; rel_pos as a 1 x 1 x L x D image
    pos = F.interpolate(
        source["image_encoder.pos_embed"].permute(0, 3, 1, 2), (grid, grid), mode="bilinear", align_corners=False
    ).permute(0, 2, 3, 1)
    torch.testing.assert_close(got["image_encoder.pos_embed"], pos)
    for key in resized - {"image_encoder.pos_embed"}:
        assert got[key].shape == (rel_len, 16), key
        upstream = F.interpolate(source[key][None, None], (rel_len, 16), mode="bilinear", align_corners=False)[0, 0]
        torch.testing.assert_close(got[key], upstream)
    assert got["image_encoder.blocks.0.attn.rel_pos_h"].shape == (27, 16)  # windowed: window 14 -> 27


def test_port_keeps_constant_position_embeddings_constant(sam1024):
    """Resizing is interpolation: a constant table stays the same constant."""
    net = build_sam_segmenter("vit_b", image_size=256, device="meta", **TINY_PORT)
    state = {
        "image_encoder.pos_embed": torch.full((1, 64, 64, 64), 0.25),
        "image_encoder.blocks.1.attn.rel_pos_h": torch.full((127, 16), -2.0),
    }
    out = resize_sam_state_dict(state, net)
    assert torch.equal(out["image_encoder.pos_embed"], torch.full((1, 16, 16, 64), 0.25))
    assert torch.equal(out["image_encoder.blocks.1.attn.rel_pos_h"], torch.full((31, 16), -2.0))
    bicubic = resize_sam_state_dict(
        {"image_encoder.pos_embed": torch.randn(1, 64, 64, 64)}, net, pos_embed_mode="bicubic"
    )
    assert bicubic["image_encoder.pos_embed"].shape == (1, 16, 16, 64)


def test_model_layout_and_round_trip(med2d, tmp_path):
    path = tmp_path / "ours.pt"
    torch.save({"model": med2d.state_dict(), "epoch": 3}, path)  # extra top-level keys are ignored
    loaded = build_sam_segmenter("vit_b", image_size=SIZE, encoder_adapter=True, checkpoint=path, **TINY)
    ref, got = med2d.state_dict(), loaded.state_dict()
    assert list(got) == list(ref) and all(torch.equal(got[k], ref[k]) for k in ref)
    image = torch.rand(1, 1, 40, 40)
    with torch.no_grad():
        assert torch.equal(loaded(image), med2d(image))


@pytest.mark.parametrize("value", ["null", "None", ""])
def test_checkpoint_null_strings_mean_random_init_with_warning(value, caplog):
    with caplog.at_level(logging.WARNING, logger="monaiseg.networks.sam_builder"):
        net = build_sam_segmenter("vit_b", image_size=SIZE, checkpoint=value, **TINY)
    assert isinstance(net, SAMSegmenter)
    assert "RANDOM weights" in caplog.text and "SAM vit_b" in caplog.text


def test_renamed_and_wrong_shape_keys_are_listed_with_the_file(model, tmp_path):
    state = dict(model.state_dict())
    state["mask_decoder.iou_token_renamed.weight"] = state.pop("mask_decoder.iou_token.weight")
    state["image_encoder.blocks.0.attn.rel_pos_h"] = torch.zeros(13, 16)  # windowed block: never resized
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointMismatchError) as info:
        build_sam_segmenter("vit_b", image_size=SIZE, checkpoint=path, **TINY)
    message = str(info.value)
    assert str(path) in message
    assert "missing keys (1): mask_decoder.iou_token.weight" in message
    assert "unexpected keys (1): mask_decoder.iou_token_renamed.weight" in message
    assert "image_encoder.blocks.0.attn.rel_pos_h (13, 16) != (27, 16)" in message
    assert "SAM-Med2D" not in message


def test_sam_checkpoint_for_sam_med2d_names_adapter_keys_and_model(sam1024):
    path, _ = sam1024
    with pytest.raises(CheckpointMismatchError) as info:
        build_sam_segmenter("vit_b", image_size=256, encoder_adapter=True, checkpoint=path, **TINY_PORT)
    message = str(info.value)
    assert str(path) in message
    assert (
        "missing keys (24): image_encoder.blocks.0.Adapter.norm.weight, image_encoder.blocks.0.Adapter.norm.bias"
        in message
    )
    assert "unexpected keys" not in message and "shape mismatches" not in message  # resized to 256 first
    assert "The model is SAM-Med2D" in message and "encoder_adapter=False" in message


def test_sam_med2d_checkpoint_for_plain_sam_says_so(med2d, model, tmp_path):
    path = tmp_path / "med2d.pth"
    torch.save({"model": med2d.state_dict()}, path)
    with pytest.raises(
        CheckpointMismatchError, match=r"unexpected keys \(12\): image_encoder.blocks.0.Adapter"
    ) as info:
        load_sam_checkpoint(copy.deepcopy(model), path)
    assert "build the model with encoder_adapter=True" in str(info.value)


def test_optimizer_pickled_release_is_refused_then_extracted(med2d, tmp_path):
    """SAM-Med2D's train.py saves {'model': sd, 'optimizer': <Adam object>}."""
    src = tmp_path / "sam-med2d_b.pth"
    torch.save({"model": med2d.state_dict(), "optimizer": torch.optim.Adam(med2d.parameters(), lr=1e-4)}, src)
    with pytest.raises(ValueError) as info:
        build_sam_segmenter("vit_b", image_size=SIZE, encoder_adapter=True, checkpoint=src, **TINY)
    message = str(info.value)
    assert str(src) in message and "weights_only=True" in message and "torch.optim.adam.Adam" in message
    assert f"extract_sam_med2d_weights({str(src)!r}, <new .pth>, trust=True)" in message
    assert not isinstance(info.value, CheckpointMismatchError)

    dst = tmp_path / "converted" / "sam-med2d_b_weights.pth"
    with pytest.raises(ValueError, match="trust=True"):
        extract_sam_med2d_weights(src, dst)
    assert not dst.exists()
    convert = runpy.run_path(str(REPO / "scripts" / "convert_sam_med2d.py"))["main"]
    with pytest.raises(ValueError, match="trust=True"):
        convert([str(src), str(dst)])  # the script refuses without --trust too
    convert([str(src), str(dst), "--trust"])
    assert [p.name for p in dst.parent.iterdir()] == [dst.name]  # written atomically, no leftovers
    assert src.is_file()  # the release is left as it is
    content = torch.load(dst, weights_only=True)
    assert list(content) == ["model"]
    assert all(type(v) is torch.Tensor for v in content["model"].values())  # plain tensors, not Parameters
    loaded = build_sam_segmenter("vit_b", image_size=SIZE, encoder_adapter=True, checkpoint=dst, **TINY)
    ref = med2d.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())


@pytest.mark.parametrize("content", ["list", "empty", "model_of_strings"])
def test_not_a_state_dict_raises_naming_file(tmp_path, content):
    obj = {"list": [torch.zeros(1)], "empty": {}, "model_of_strings": {"model": {"a": "b"}}}[content]
    path = tmp_path / f"{content}.pth"
    torch.save(obj, path)
    with pytest.raises(ValueError, match=r"neither a flat state dict nor \{'model': state_dict\}") as info:
        build_sam_segmenter("vit_b", image_size=SIZE, checkpoint=path, **TINY)
    assert str(path) in str(info.value)


def test_missing_and_corrupt_files(tmp_path):
    bundle_file = tmp_path / "bundle" / "models" / "medsam_vit_b.pth"
    bundle_file.parent.mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as info:
        build_sam_segmenter("vit_b", image_size=SIZE, checkpoint=bundle_file, **TINY)
    assert str(bundle_file) in str(info.value)
    assert f"download_large_files --bundle_path {tmp_path / 'bundle'}" in str(info.value)
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x04not a torch file")  # torch also says "Weights only load failed" here
    with pytest.raises(ValueError, match="cannot be read as a torch file") as info:
        build_sam_segmenter("vit_b", image_size=SIZE, checkpoint=corrupt, **TINY)
    assert str(corrupt) in str(info.value) and "extract_sam_med2d_weights" not in str(info.value)
