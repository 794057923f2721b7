"""sam_automed with LiteMedSAM's pretrained encoder, prompt encoder and mask decoder
(`configs/lite_medsam_encoder.json`): the switch builds the official weights under the MobileNetV3 prompt
generator, runs at any input size, keeps the frozen TinyViT in eval mode, reuses cached embeddings; an
incompatible image size is refused before training."""

from __future__ import annotations

import pytest
import torch
from conftest import REPO, error_chain
from monai.data import MetaTensor

from monaiseg.networks import freeze_except, lite_medsam_asset, read_sam_checkpoint
from monaiseg.networks.sam_automed import build_sam_automed
from monaiseg.networks.tiny_vit import TinyViT

CONFIGS = REPO / "bundles" / "sam_automed" / "configs"


@pytest.mark.slow  # builds the official LiteMedSAM encoder and decoder (~5 s)
def test_lite_switch_builds_official_parts_and_runs(tmp_path):
    torch.manual_seed(0)
    model = build_sam_automed(
        2, encoder="lite_medsam", foundation_checkpoint="default", backbone="small", embedding_cache_dir=tmp_path
    )
    official = read_sam_checkpoint(lite_medsam_asset())
    assert isinstance(model.image_encoder, TinyViT) and model.image_size == 256
    mine = {k: v for k, v in model.state_dict().items() if not k.startswith("prompt_generator.")}
    assert mine.keys() == official.keys() and all(torch.equal(v, official[k]) for k, v in mine.items())
    assert model.prompt_generator.embedding_size == (64, 64)
    assert torch.equal(model.prompt_generator.dense_bias, official["prompt_encoder.no_mask_embed.weight"][0])
    assert model.pixel_mean.flatten().tolist() == [0, 0, 0] and model.pixel_std.flatten().tolist() == [1, 1, 1]

    model = freeze_except(model, ["prompt_generator", "mask_decoder"]).train()
    assert not model.image_encoder.training and model.prompt_generator.training  # TinyViT's batch norm kept
    images = MetaTensor(torch.rand(1, 3, 120, 150), meta={"filename_or_obj": "polyp.png"})
    logits = model(images)
    assert logits.shape == (1, 3, 120, 150) and torch.equal(logits[:, 0], torch.zeros(1, 120, 150))
    logits[:, 1:].mean().backward()
    assert model.prompt_generator.dense_head.weight.grad is not None
    assert model.mask_decoder.output_upscaling[0].weight.grad is not None
    cache = model.embedding_cache.cache
    assert (cache.misses, cache.hits) == (1, 0)
    with torch.no_grad():
        again = model(images)
    assert (cache.misses, cache.hits) == (1, 1) and torch.allclose(again, logits, atol=1e-5)
    assert again.meta["filename_or_obj"] == "polyp.png"  # cached embeddings keep the image's metadata (file names)


def test_lite_switch_refuses_other_sizes_and_a_trained_encoder_with_cache(tmp_path):
    with pytest.raises(
        ValueError, match=r"SAM-AutoMed: encoder 'lite_medsam' needs image_size 256 .* got image_size 64"
    ):
        build_sam_automed(1, image_size=64, encoder="lite_medsam")
    with pytest.raises(ValueError, match=r"encoder_depth, encoder_embed_dim size the SAM-Med2D ViT"):
        build_sam_automed(1, encoder="lite_medsam", encoder_depth=2, encoder_embed_dim=64)
    with pytest.raises(ValueError, match="encoder must be one of"):
        build_sam_automed(1, encoder="tinyvit")
    model = build_sam_automed(1, encoder="lite_medsam", backbone="small", embedding_cache_dir=tmp_path).train()
    with pytest.raises(ValueError, match="embedding cache .* needs a frozen image encoder"):
        model(torch.rand(2, 3, 64, 64))


def test_bundle_refuses_incompatible_image_size_before_training(tmp_path):
    from monai.bundle import run

    with pytest.raises(Exception) as info:
        run(
            config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "lite_medsam_encoder.json")],
            logging_file=str(CONFIGS / "logging.conf"),
            bundle_root=str(tmp_path),
            dataset_dir=str(tmp_path / "absent"),
            image_size=320,
        )
    message = error_chain(info.value)
    assert "SAM-AutoMed: encoder 'lite_medsam' needs image_size 256" in message and "got image_size 320" in message
    assert list(tmp_path.iterdir()) == []
