"""SAM-AutoMed's MobileNetV3 prompt generator and the SAMAutoMed network (shapes, switch, init,
gradients, freezing, weight loading)."""

from __future__ import annotations

import pytest
import torch
from torchvision.models import mobilenet_v3_small

from monaiseg.networks import CheckpointMismatchError, build_sam_segmenter, freeze_except, parameter_report
from monaiseg.networks.auto_prompt import MobileNetPromptGenerator
from monaiseg.networks.sam_automed import SAMAutoMed, build_sam_automed

from .checkpoint_manifests import manifest

TINY = {"image_size": 64, "backbone": "small", "encoder_depth": 2, "encoder_embed_dim": 64, "encoder_num_heads": 2}
DEFAULT_TRAINABLE = ["prompt_generator", "mask_decoder"]  # configs/train.json


def generator(attention: bool, size: int = 64, backbone: str = "small", seed: int = 0) -> MobileNetPromptGenerator:
    torch.manual_seed(seed)
    return MobileNetPromptGenerator(
        3, num_tokens=2, backbone=backbone, attention=attention, embedding_size=(size // 16, size // 16)
    )


@pytest.mark.parametrize("attention", [False, True])
@pytest.mark.parametrize(("size", "backbone"), [(256, "large"), (64, "small")])
def test_prompt_shapes_like_sam_prompt_encoder(attention, size, backbone):
    sparse, dense = generator(attention, size, backbone).eval()(torch.rand(2, 3, size, size))
    assert sparse.shape == (2, 3, 2, 256) and dense.shape == (2, 3, 256, size // 16, size // 16)
    for c in range(3):  # per class: what SAM's prompt encoder gives the decoder for one object
        assert sparse[:, c].shape == (2, 2, 256) and dense[:, c].shape == (2, 256, size // 16, size // 16)
    assert torch.isfinite(sparse).all() and torch.isfinite(dense).all()


@pytest.mark.parametrize("attention", [False, True])
def test_dense_map_starts_at_the_no_mask_embedding(attention):
    model = generator(attention).eval()
    with torch.no_grad():
        model.dense_bias.copy_(torch.arange(256.0))
    sparse, dense = model(torch.rand(2, 3, 64, 64))
    assert torch.equal(dense, torch.arange(256.0)[None, None, :, None, None].expand_as(dense))  # zero-init head
    assert sparse.abs().sum() > 0 and not torch.equal(sparse[0], sparse[1])  # tokens depend on the image


def test_attention_switch_changes_modules_and_output():
    plain, improved = generator(False).eval(), generator(True).eval()
    plain_children, improved_children = (
        {n for n, _ in plain.named_children()},
        {n for n, _ in improved.named_children()},
    )
    assert plain_children == {"backbone", "token_head", "dense_head"}
    assert improved_children == {
        "backbone",
        "project",
        "refine",
        "positions",
        "class_queries",
        "class_gate",
        "dense_head",
    }
    assert torch.equal(plain.backbone[0][0].weight, improved.backbone[0][0].weight)  # same seed, same backbone
    image = torch.rand(1, 3, 64, 64)
    assert not torch.allclose(plain(image)[0], improved(image)[0])


@pytest.mark.parametrize("attention", [False, True])
def test_gradients_reach_the_backbone(attention):
    model = generator(attention).train()
    sparse, dense = model(torch.rand(2, 3, 64, 64))
    (sparse.mean() + dense.mean()).backward()
    first, last = model.backbone[0][0].weight.grad, model.dense_head.weight.grad
    assert first is not None and torch.isfinite(first).all() and first.abs().sum() > 0
    assert last is not None and last.abs().sum() > 0  # the zero-initialised head learns from step one


def test_switch_given_as_text_by_the_cli():
    assert not build_sam_automed(3, prompt_attention="false", device="meta", **TINY).prompt_generator.attention
    assert build_sam_automed(3, prompt_attention="True", device="meta", **TINY).prompt_generator.attention
    with pytest.raises(ValueError, match="prompt_attention must be true or false"):
        build_sam_automed(3, prompt_attention="no", device="meta", **TINY)


def test_backbone_imagenet_file_loads_features(tmp_path):
    reference = mobilenet_v3_small(weights=None)
    path = tmp_path / "mobilenet_v3_small-047dcff4.pth"
    torch.save(reference.state_dict(), path)  # torchvision's layout: flat, features.* + classifier.*
    model = MobileNetPromptGenerator(2, backbone="small", backbone_weights=str(path), embedding_size=(4, 4))
    for key, value in reference.features.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key
    torch.save({k: v for k, v in reference.state_dict().items() if "features.0." not in k}, path)
    with pytest.raises(CheckpointMismatchError, match=r"mobilenet_v3_small-047dcff4.pth.*\n.*missing keys"):
        MobileNetPromptGenerator(2, backbone="small", backbone_weights=str(path))
    with pytest.raises(FileNotFoundError, match="download_large_files"):
        MobileNetPromptGenerator(2, backbone="small", backbone_weights=str(tmp_path / "absent.pth"))
    with pytest.raises(ValueError, match="unknown MobileNetV3 size"):
        MobileNetPromptGenerator(2, backbone="medium")


@pytest.fixture(scope="module")
def tiny_model() -> SAMAutoMed:
    torch.manual_seed(0)
    return build_sam_automed(3, **TINY)


def test_forward_gives_class_logits_at_input_size(tiny_model):
    logits = tiny_model(torch.rand(2, 1, 50, 70))
    assert logits.shape == (2, 4, 50, 70)
    assert torch.equal(logits[:, 0], torch.zeros(2, 50, 70))  # fixed background logit
    rgb = tiny_model(torch.rand(1, 3, 64, 64))
    assert rgb.shape == (1, 4, 64, 64) and torch.isfinite(rgb).all()


def test_each_class_is_decoded_with_its_own_prompts(tiny_model):
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        logits = tiny_model(image)
        sparse, dense = tiny_model.prompt_generator(tiny_model.normalize_images(image))
        embeddings, _ = tiny_model.encode_images(image)
        masks, _ = tiny_model.mask_decoder(
            embeddings, tiny_model.prompt_encoder.get_dense_pe(), sparse[0, 1:2], dense[0, 1:2], multimask_output=False
        )
    class2 = torch.nn.functional.interpolate(masks, size=(64, 64), mode="bilinear", align_corners=False)
    assert torch.allclose(logits[0, 2], class2[0, 0], atol=1e-5)


def test_encoder_frozen_per_config_and_gradients(tiny_model):
    model = freeze_except(build_sam_automed(3, **TINY), DEFAULT_TRAINABLE).train()
    assert not any(p.requires_grad for p in model.image_encoder.parameters())
    assert not any(p.requires_grad for p in model.prompt_encoder.parameters())
    assert all(p.requires_grad for p in model.prompt_generator.parameters())
    assert all(p.requires_grad for p in model.mask_decoder.parameters())
    model(torch.rand(2, 3, 64, 64))[:, 1:].mean().backward()
    assert all(p.grad is None for p in model.image_encoder.parameters())
    assert model.prompt_generator.backbone[0][0].weight.grad.abs().sum() > 0
    adapters = freeze_except(model, [*DEFAULT_TRAINABLE, "image_encoder.blocks.*.Adapter.*"])  # SAM-Med2D's recipe
    trainable = {
        n.split(".")[0] + (".Adapter" if ".Adapter." in n else "")
        for n, p in adapters.named_parameters()
        if p.requires_grad
    }
    assert trainable == {"prompt_generator", "mask_decoder", "image_encoder.Adapter"}


def test_sam_med2d_weights_load_into_encoder_and_decoder(tmp_path):
    torch.manual_seed(1)
    sam_med2d = build_sam_segmenter(
        "vit_b", 64, encoder_adapter=True, encoder_depth=2, encoder_embed_dim=64, encoder_num_heads=2
    )
    path = tmp_path / "sam-med2d_b_weights.pth"
    torch.save({"model": sam_med2d.state_dict()}, path)
    model = build_sam_automed(3, foundation_checkpoint=str(path), **TINY)
    for key, value in sam_med2d.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key
    assert torch.equal(model.prompt_generator.dense_bias, sam_med2d.prompt_encoder.no_mask_embed.weight[0])
    plain_sam = build_sam_segmenter("vit_b", 64, encoder_depth=2, encoder_embed_dim=64, encoder_num_heads=2)
    torch.save(plain_sam.state_dict(), tmp_path / "sam.pth")
    with pytest.raises(CheckpointMismatchError, match="expects a SAM-Med2D checkpoint"):
        build_sam_automed(3, foundation_checkpoint=str(tmp_path / "sam.pth"), **TINY)
    with pytest.raises(FileNotFoundError, match="extract_sam_med2d_weights"):
        build_sam_automed(3, foundation_checkpoint=str(tmp_path / "models" / "absent.pth"), **TINY)


def test_trained_checkpoint_round_trip(tiny_model, tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"model": tiny_model.state_dict()}, path)
    loaded = build_sam_automed(3, checkpoint=str(path), foundation_checkpoint=str(tmp_path / "unused.pth"), **TINY)
    image = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(image), tiny_model.eval()(image))
    with pytest.raises(CheckpointMismatchError, match="prompt_generator"):
        build_sam_automed(3, checkpoint=str(path), **{**TINY, "prompt_attention": False})


@pytest.mark.parametrize(
    ("attention", "total", "trainable"), [(False, 276_428_128, 9_244_692), (True, 275_416_835, 8_233_399)]
)
def test_default_parameter_counts(attention, total, trainable):
    model = freeze_except(build_sam_automed(3, prompt_attention=attention, device="meta"), DEFAULT_TRAINABLE)
    report = parameter_report(model)
    assert (report["total"], report["trainable"]) == (total, trainable)


def test_keys_besides_the_generator_are_sam_med2d_release_keys():
    official = manifest("sam_med2d_vit_b.json")["state_dict"]
    model = build_sam_automed(3, device="meta")
    ours = {k: list(v.shape) for k, v in model.state_dict().items() if not k.startswith("prompt_generator.")}
    assert ours == {k: list(v) for k, v in official.items()}
