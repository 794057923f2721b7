"""SAM2Segmenter / build_sam2_segmenter: sizes, official key layout, forward contract,
freezing, prompt coordinate scaling and strict checkpoint loading.

One random-init sam2.1 tiny at image_size 256 is built per module (fast on CPU)."""

from __future__ import annotations

import inspect
import pickle
from importlib.resources import files

import pytest
import torch
import torch.nn.functional as F
import yaml
from monai.bundle.scripts import download_large_files

from monaiseg.networks import (
    SAM2_CONFIGS,
    CheckpointMismatchError,
    SAM2Segmenter,
    build_sam2_segmenter,
    freeze_except,
    load_sam2_checkpoint,
    parameter_report,
)

from .checkpoint_manifests import manifest

SIZE = 256


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_sam2_segmenter("tiny", image_size=SIZE).eval()


def shapes(state_dict) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in state_dict.items()}


def cheap_state_dict(state_dict) -> dict[str, torch.Tensor]:
    """Same keys/shapes, each tensor a stride-0 view of one zero (the file is a few hundred KB)."""
    return {k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in state_dict.items()}


# --------------------------------------------------------------------------- sizes and configs


def test_size_names_map_to_existing_sam21_configs():
    assert set(SAM2_CONFIGS) == {"tiny", "small", "base_plus", "large"}
    # Hiera trunk width / depth per size (sam2.1 paper / released configs)
    expected = {
        "tiny": (96, [1, 2, 7, 2]),
        "small": (96, [1, 2, 11, 2]),
        "base_plus": (112, None),
        "large": (144, [2, 6, 36, 4]),
    }
    for size, rel in SAM2_CONFIGS.items():
        path = files("sam2") / rel
        assert path.is_file(), f"{size}: {rel} missing from the sam2 package"
        trunk = yaml.safe_load(path.read_text())["model"]["image_encoder"]["trunk"]
        embed_dim, stages = expected[size]
        assert trunk["embed_dim"] == embed_dim, size
        if stages is not None:
            assert trunk["stages"] == stages, size


def test_tiny_builds_as_segmenter_with_requested_size(model):
    assert isinstance(model, SAM2Segmenter)
    assert model.image_size == SIZE
    assert tuple(model.sam_prompt_encoder.image_embedding_size) == (SIZE // 16, SIZE // 16)
    assert tuple(model.sam_prompt_encoder.mask_input_size) == (SIZE // 4, SIZE // 4)
    # RoPE tables in memory attention follow the feature map (16 x 16 at 256), not the 64 x 64 of 1024
    assert model.memory_attention.layers[0].self_attn.freqs_cis.shape[0] == (SIZE // 16) ** 2
    assert model.multimask_output is False


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"size": "huge"}, r"unknown SAM2 size 'huge'.*base_plus.*large.*small.*tiny"),
        ({"size": "tiny", "image_size": 500}, r"multiple of 32, got 500"),
        ({"size": "tiny", "image_size": 1000}, r"multiple of 32, got 1000"),
    ],
)
def test_bad_size_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_sam2_segmenter(**kwargs)


# --------------------------------------------------------------------------- official layout


@pytest.mark.parametrize("name", ["sam2.1_hiera_tiny.json", "medsam2_2025.json"])
def test_state_dict_matches_official_manifest(model, name):
    official = manifest(name)
    ours = shapes(model.state_dict())
    assert len(official["state_dict"]) == official["num_keys"] == 471
    missing, extra = sorted(set(official["state_dict"]) - set(ours)), sorted(set(ours) - set(official["state_dict"]))
    assert not missing and not extra, f"missing {missing[:5]}, extra {extra[:5]}"
    assert ours == {k: list(v) for k, v in official["state_dict"].items()}
    assert list(ours) == list(official["state_dict"])  # same order as in the file
    assert sum(v.numel() for v in model.state_dict().values()) == official["num_params"] == 38962754
    # pixel_mean/std are ours and must not leak into the checkpoint layout
    assert "pixel_mean" not in ours and "pixel_std" not in ours


def test_parameters_do_not_depend_on_image_size(model):
    model512 = build_sam2_segmenter("tiny", image_size=512)
    assert model512.image_size == 512
    assert model512.memory_attention.layers[0].self_attn.freqs_cis.shape[0] == 32 * 32
    assert tuple(model512.sam_prompt_encoder.mask_input_size) == (128, 128)
    assert shapes(model512.state_dict()) == shapes(model.state_dict())
    assert list(model512.state_dict()) == list(model.state_dict())


# --------------------------------------------------------------------------- forward contract


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return torch.rand(2, 1, 100, 120)


@pytest.mark.slow
@torch.no_grad()
def test_forward_shapes_for_every_prompt_kind(model, images):
    boxes = torch.tensor([[10.0, 20.0, 60.0, 80.0], [0.0, 0.0, 119.0, 99.0]])
    points = torch.tensor([[[30.0, 40.0], [90.0, 10.0]], [[5.0, 5.0], [0.0, 0.0]]])
    point_labels = torch.tensor([[1, 0], [1, -1]])
    mask_inputs = torch.full((2, 1, 100, 120), 5.0)
    none, none_iou = model.predict_masks(images)
    assert none.shape == (2, 1, 100, 120) and none_iou.shape == (2, 1)  # input size, not image_size
    assert torch.equal(model(images), none)  # forward = predict_masks logits
    for prompts in (
        {"boxes": boxes},
        {"points": points, "point_labels": point_labels},
        {"mask_inputs": mask_inputs},
        {"boxes": boxes, "points": points, "point_labels": point_labels},
    ):
        logits, iou = model.predict_masks(images, **prompts)
        assert logits.shape == (2, 1, 100, 120), prompts.keys()
        assert iou.shape == (2, 1), prompts.keys()
        assert logits.dtype == torch.float32 and torch.isfinite(logits).all()
        # each prompt kind reaches the decoder (a dropped prompt would give the no-prompt output)
        assert not torch.allclose(logits, none), prompts.keys()


@pytest.mark.slow
@torch.no_grad()
def test_one_image_several_objects_shares_features(model, images):
    boxes = torch.tensor([[10.0, 20.0, 60.0, 80.0], [30.0, 5.0, 90.0, 40.0], [0.0, 0.0, 119.0, 99.0]])
    shared, shared_iou = model.predict_masks(images[:1], boxes=boxes)
    repeated, repeated_iou = model.predict_masks(images[:1].expand(3, -1, -1, -1), boxes=boxes)
    assert shared.shape == (3, 1, 100, 120)
    assert torch.allclose(shared, repeated, atol=1e-4) and torch.allclose(shared_iou, repeated_iou, atol=1e-5)
    with pytest.raises(ValueError, match="3 prompt rows for a batch of 2 images"):
        model.predict_masks(images[:2], boxes=boxes)


@pytest.mark.slow
@torch.no_grad()
def test_multimask_gives_three_masks(model, images):
    boxes = torch.tensor([[10.0, 20.0, 60.0, 80.0]])
    logits, iou = model.predict_masks(images[:1], boxes=boxes, multimask_output=True)
    assert logits.shape == (1, 3, 100, 120) and iou.shape == (1, 3)
    model.multimask_output = True  # the build-time default (multimask_output=...) is used by forward
    try:
        assert torch.equal(model(images[:1], boxes=boxes), logits)
    finally:
        model.multimask_output = False


@pytest.mark.slow
@torch.no_grad()
def test_grey_input_equals_three_copies(model, images):
    boxes = torch.tensor([[10.0, 20.0, 60.0, 80.0]])
    grey = model(images[:1], boxes=boxes)
    rgb = model(images[:1].repeat(1, 3, 1, 1), boxes=boxes)
    torch.testing.assert_close(grey, rgb, rtol=0, atol=1e-6)


@torch.no_grad()
def test_normalisation_is_imagenet_at_image_size(model):
    """A constant 0.5 image becomes (0.5 - mean) / std per channel at S x S."""
    out = model.normalize_images(torch.full((1, 1, 40, 30), 0.5))
    assert out.shape == (1, 3, SIZE, SIZE)
    expected = [(0.5 - 0.485) / 0.229, (0.5 - 0.456) / 0.224, (0.5 - 0.406) / 0.225]
    torch.testing.assert_close(out[0, :, 7, 9], torch.tensor(expected))


@pytest.mark.parametrize("shape", [(2, 2, 64, 64), (1, 64, 64), (2, 4, 64, 64)])  # 5D = clips (forward_clip)
def test_bad_image_shape_raises(model, shape):
    with pytest.raises(ValueError, match=r"\(B, 1\|3, H, W\)"), torch.no_grad():
        model(torch.rand(shape))


def test_points_without_labels_raise(model):
    with pytest.raises(ValueError, match="point_labels"), torch.no_grad():
        model(torch.rand(1, 1, 64, 64), points=torch.tensor([[[3.0, 4.0]]]))


@pytest.mark.slow
@torch.no_grad()
def test_box_coordinates_are_input_pixels(model):
    """Same picture at 128 x 128 with box b and upsampled to 256 x 256 with box 2b -> same logits."""
    torch.manual_seed(2)
    small = torch.rand(1, 1, 128, 128)
    large = F.interpolate(small, size=(256, 256), mode="bilinear", align_corners=False)
    box = torch.tensor([[20.0, 30.0, 80.0, 100.0]])
    at_small = model(small, boxes=box)
    at_large = model(large, boxes=box * 2)
    assert at_large.shape == (1, 1, 256, 256)
    down = F.avg_pool2d(at_large, 2)
    torch.testing.assert_close(down, at_small, rtol=0, atol=1e-4)
    # control: the unscaled box at 256 is a different prompt and gives clearly different logits
    wrong = F.avg_pool2d(model(large, boxes=box), 2)
    assert (wrong - at_small).abs().max() > 100 * (down - at_small).abs().max().clamp_min(1e-6)


# --------------------------------------------------------------------------- training


def test_freeze_except_decoder_gets_grads_only_on_decoder():
    net = build_sam2_segmenter("tiny", image_size=SIZE)
    freeze_except(net, ["sam_mask_decoder"])
    decoder = {n for n, p in net.named_parameters() if n.startswith("sam_mask_decoder")}
    assert decoder and all(p.requires_grad == (n in decoder) for n, p in net.named_parameters())

    logits = net(torch.rand(1, 1, 64, 64), boxes=torch.tensor([[8.0, 8.0, 40.0, 50.0]]))
    assert logits.requires_grad
    logits.sigmoid().mean().backward()
    with_grad = {n for n, p in net.named_parameters() if p.grad is not None}
    assert with_grad <= decoder
    assert "sam_mask_decoder.output_upscaling.0.weight" in with_grad
    assert "sam_mask_decoder.transformer.layers.0.self_attn.q_proj.weight" in with_grad
    assert not any(n.startswith(("image_encoder", "sam_prompt_encoder")) for n in with_grad)

    report = parameter_report(net)
    n_decoder = sum(p.numel() for n, p in net.named_parameters() if n in decoder)
    total = manifest("sam2.1_hiera_tiny.json")["num_module_parameters"]  # 38962498
    assert report["trainable"] == n_decoder
    assert report["total"] == total == sum(p.numel() for p in net.parameters())
    assert report["trainable_percent"] == pytest.approx(100.0 * n_decoder / total)
    assert 0 < report["trainable_percent"] < 20

    freeze_except(net, None)
    assert parameter_report(net) == {"trainable": total, "total": total, "trainable_percent": 100.0}


@pytest.mark.slow
def test_trainable_encoder_receives_gradients():
    """encode_images must not silently run the encoder without grad when it is trainable."""
    net = build_sam2_segmenter("tiny", image_size=SIZE)
    freeze_except(net, ["image_encoder.trunk.patch_embed", "sam_mask_decoder"])
    net(torch.rand(1, 1, 64, 64), boxes=torch.tensor([[8.0, 8.0, 40.0, 50.0]])).mean().backward()
    grad = net.image_encoder.trunk.patch_embed.proj.weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_freeze_except_unknown_prefix_raises(model):
    before = [p.requires_grad for p in model.parameters()]
    with pytest.raises(ValueError, match=r"sam_mask_decodr"):
        freeze_except(model, ["sam_mask_decoder", "sam_mask_decodr"])
    assert [p.requires_grad for p in model.parameters()] == before  # nothing changed on error


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("value", ["null", "None", ""])
def test_checkpoint_null_strings_mean_random_init(value):
    """The bundle CLI cannot pass None: these strings build a random model instead of looking for a file."""
    assert isinstance(build_sam2_segmenter("tiny", image_size=SIZE, checkpoint=value), SAM2Segmenter)


@pytest.mark.slow
def test_checkpoint_round_trip(model, tmp_path):
    path = tmp_path / "ours.pt"
    torch.save({"model": model.state_dict(), "epoch": 3}, path)  # extra top-level keys are ignored
    loaded = build_sam2_segmenter("tiny", image_size=SIZE, checkpoint=path)
    ref = model.state_dict()
    got = loaded.state_dict()
    assert list(got) == list(ref)
    assert all(torch.equal(got[k], ref[k]) for k in ref)
    # and it really was loaded: a fresh random build differs
    fresh = build_sam2_segmenter("tiny", image_size=SIZE).state_dict()
    assert not torch.equal(fresh["sam_mask_decoder.iou_token.weight"], ref["sam_mask_decoder.iou_token.weight"])
    # a checkpoint saved from a 256 model loads into a 512 model (no size-dependent parameters)
    load_sam2_checkpoint(build_sam2_segmenter("tiny", image_size=512), path)


def test_renamed_key_is_listed_as_missing_and_unexpected(model, tmp_path):
    sd = cheap_state_dict(model.state_dict())
    sd["no_obj_ptr_renamed"] = sd.pop("no_obj_ptr")
    path = tmp_path / "renamed.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        build_sam2_segmenter("tiny", image_size=SIZE, checkpoint=path)
    message = str(info.value)
    assert str(path) in message
    assert "missing keys (1): no_obj_ptr\n" in message + "\n"
    assert "unexpected keys (1): no_obj_ptr_renamed" in message
    assert isinstance(info.value, ValueError)


def test_wrong_shape_is_listed(model, tmp_path):
    sd = cheap_state_dict(model.state_dict())
    sd["sam_mask_decoder.iou_token.weight"] = torch.zeros(2, 256)  # (1, 256) in sam2
    sd["no_mem_embed"] = torch.zeros(1, 1, 64)  # (1, 1, 256)
    path = tmp_path / "shape.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_sam2_checkpoint(build_sam2_segmenter("tiny", image_size=SIZE), path)
    message = str(info.value)
    assert str(path) in message and "shape mismatches (2)" in message
    assert "sam_mask_decoder.iou_token.weight (2, 256) != (1, 256)" in message
    assert "no_mem_embed (1, 1, 64) != (1, 1, 256)" in message
    assert "missing keys" not in message and "unexpected keys" not in message


def test_many_mismatches_are_summarised(model, tmp_path):
    sd = {f"prefix.{k}": v for k, v in cheap_state_dict(model.state_dict()).items()}
    path = tmp_path / "prefixed.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointMismatchError, match=r"missing keys \(471\).*\(459 more\)") as info:
        load_sam2_checkpoint(build_sam2_segmenter("tiny", image_size=SIZE), path)
    assert "unexpected keys (471): prefix." in str(info.value)


@pytest.mark.parametrize("content", ["flat", "list", "model_not_dict"])
def test_not_official_layout_raises_naming_file(model, tmp_path, content):
    sd = cheap_state_dict(model.state_dict())
    obj = {"flat": sd, "list": [sd], "model_not_dict": {"model": [1, 2]}}[content]
    path = tmp_path / f"{content}.pt"
    torch.save(obj, path)
    with pytest.raises(ValueError, match=r"\{'model': state_dict\} layout") as info:
        build_sam2_segmenter("tiny", image_size=SIZE, checkpoint=path)
    assert str(path) in str(info.value)
    assert not isinstance(info.value, CheckpointMismatchError)


def test_missing_checkpoint_file(tmp_path):
    bundle_path = tmp_path / "bundle" / "models" / "sam2.1_hiera_tiny.pt"
    bundle_path.parent.mkdir(parents=True)
    with pytest.raises(FileNotFoundError) as info:
        build_sam2_segmenter("tiny", image_size=SIZE, checkpoint=bundle_path)
    message = str(info.value)
    assert str(bundle_path) in message
    # the hint must be a runnable command: the flag is monai's download_large_files(bundle_path=...)
    assert "bundle_path" in inspect.signature(download_large_files).parameters
    assert f"download_large_files --bundle_path {tmp_path / 'bundle'}" in message

    own = tmp_path / "bundle" / "models" / "model.pt"  # our trained weights: nothing to download
    with pytest.raises(FileNotFoundError, match=r"train the bundle first") as info:
        build_sam2_segmenter("tiny", image_size=SIZE, checkpoint=own)
    assert str(own) in str(info.value)

    elsewhere = tmp_path / "weights" / "x.pt"
    with pytest.raises(FileNotFoundError, match="not found") as info:
        build_sam2_segmenter("tiny", image_size=SIZE, checkpoint=elsewhere)
    assert "download_large_files" not in str(info.value)


UNPICKLED: list = []


class Payload:
    """Records when it is unpickled: a weights-only load must never construct it."""

    def __setstate__(self, state):
        UNPICKLED.append(state)


@pytest.mark.parametrize("extra", ["optimizer_object", "custom_object"])
def test_pickled_objects_are_refused(model, tmp_path, extra):
    sd = cheap_state_dict(model.state_dict())
    if extra == "optimizer_object":  # what SAM-Med2D's train.py writes
        obj = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    else:
        obj = Payload()
        obj.flag = 1
    path = tmp_path / f"{extra}.pt"
    torch.save({"model": sd, "extra": obj}, path)
    with pytest.raises(ValueError, match="weights-only") as info:
        build_sam2_segmenter("tiny", image_size=SIZE, checkpoint=path)
    assert str(path) in str(info.value)
    assert UNPICKLED == []
    # the file itself is a valid pickle: it is refused by policy, not because it is corrupt
    assert isinstance(torch.load(path, weights_only=False)["extra"], type(obj))
    UNPICKLED.clear()


def test_corrupt_file_raises_naming_file(tmp_path):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(pickle.dumps("x")[:3])
    with pytest.raises(ValueError, match="cannot be read") as info:
        build_sam2_segmenter("tiny", image_size=SIZE, checkpoint=path)
    assert str(path) in str(info.value)
