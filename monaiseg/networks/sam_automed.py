"""SAM-AutoMed (docs/methods.md#sam-automed): SAM-Med2D whose prompts come from a MobileNetV3 prompt generator
(`auto_prompt.py`), for fully automatic multi-class segmentation.

`SAMAutoMed` is a `SAMSegmenter` (keys `image_encoder.*` with SAM-Med2D's adapters,
`prompt_encoder.*`, `mask_decoder.*`, so `sam-med2d_b.pth` loads strictly) plus
`prompt_generator.*`. The original prompt encoder stays: the decoder needs its positional
encoding (`get_dense_pe`), its "no mask" embedding initialises the generated dense maps, and
the inherited `predict_masks` still takes human boxes / points.

forward(image): the image is encoded once; each class c is decoded with its own generated
prompts (single-mask output), giving a mask logit l_c at the input size. The output is
(B, C + 1, H, W) with a fixed zero logit for the background: softmax([0, l_1..l_C]), and the
argmax labels a pixel with the class of largest logit when that logit is > 0 (SAM's own
mask threshold), background otherwise. No extra parameter decides the background.

`encoder="lite_medsam"` (`lite_encoder.py`): LiteMedSAM's pretrained TinyViT, prompt encoder and mask
decoder in place of SAM-Med2D's (256 input, 64 x 64 embedding, so the generator makes 64 x 64 dense
maps); the encoder sees min-max [0, 1] images as LiteMedSAM does, the generator ImageNet-normalised
ones in both cases (what MobileNetV3's weights expect).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder

from monaiseg.networks.auto_prompt import MobileNetPromptGenerator
from monaiseg.networks.checkpoint import load_model_weights
from monaiseg.networks.lite_encoder import FrozenEncoderCache, check_encoder
from monaiseg.networks.lite_medsam import build_lite_medsam
from monaiseg.networks.sam2_segmenter import IMAGENET_MEAN, IMAGENET_STD
from monaiseg.networks.sam_builder import build_sam_segmenter
from monaiseg.networks.sam_segmenter import SAMSegmenter, normalize_sam_images
from monaiseg.utils.config import as_bool, none_if_null, silenced

logger = logging.getLogger(__name__)


class SAMAutoMed(SAMSegmenter):
    """SAM-Med2D (or LiteMedSAM) image encoder + mask decoder driven by a `MobileNetPromptGenerator`
    that sees ImageNet-normalised images; a frozen encoder stays in eval mode."""

    def __init__(
        self,
        image_encoder: ImageEncoderViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        prompt_generator: MobileNetPromptGenerator,
        pixel_mean=IMAGENET_MEAN,
        pixel_std=IMAGENET_STD,
    ):
        super().__init__(image_encoder, prompt_encoder, mask_decoder, pixel_mean, pixel_std)
        if prompt_generator.embedding_size != tuple(prompt_encoder.image_embedding_size):
            raise ValueError(
                f"prompt generator makes {prompt_generator.embedding_size} dense maps but the image "
                f"embedding is {tuple(prompt_encoder.image_embedding_size)}"
            )
        self.prompt_generator = prompt_generator
        self.embedding_cache: FrozenEncoderCache | None = None  # `build_sam_automed(embedding_cache_dir=...)`
        self.register_buffer("generator_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("generator_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """As `SAMSegmenter.encode_images`, through the embedding cache when there is one (frozen encoder)."""
        if self.embedding_cache is None:
            return super().encode_images(images)
        return self.embedding_cache.encode(self.image_encoder, self.normalize_images(images)), []

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Images (B, 1|3, H, W) in [0, 1] -> class logits (B, C + 1, H, W), channel 0 background (0)."""
        height, width = images.shape[-2:]
        embeddings, _ = self.encode_images(images)  # (B, 256, h, w)
        generator_input = normalize_sam_images(images, self.image_size, self.generator_mean, self.generator_std)
        sparse, dense = self.prompt_generator(generator_input)  # (B, C, N, 256), (B, C, 256, h, w)
        # prompt rows as plain tensors: MONAI cannot slice a MetaTensor's batched metadata by B * C rows
        sparse, dense = ((x.as_tensor() if isinstance(x, MetaTensor) else x).flatten(0, 1) for x in (sparse, dense))
        low_res, _ = self.decode(embeddings, sparse, dense)  # (B * C, 1, 4h, 4w)
        low_res = low_res.reshape(images.shape[0], -1, *low_res.shape[-2:])  # (B, C, 4h, 4w)
        logits = F.interpolate(low_res, size=(height, width), mode="bilinear", align_corners=False)
        return torch.cat([logits.new_zeros(logits.shape[0], 1, height, width), logits], dim=1)


def build_sam_automed(
    num_classes: int,
    image_size: int = 256,
    variant: str = "vit_b",
    foundation_checkpoint: str | Path | None = None,
    checkpoint: str | Path | None = None,
    backbone: str = "large",
    backbone_weights: str | Path | None = None,
    prompt_attention: bool | str = True,
    num_prompt_tokens: int = 2,
    pixel_mean: float | Sequence[float] | None = None,
    pixel_std: float | Sequence[float] | None = None,
    encoder_depth: int | None = None,
    encoder_embed_dim: int | None = None,
    encoder_num_heads: int | None = None,
    device: str | torch.device = "cpu",
    encoder: str = "sam_med2d",
    embedding_cache_dir: str | Path | None = None,
) -> SAMAutoMed:
    """A `SAMAutoMed` for `num_classes` classes at `image_size` (SAM-Med2D: vit_b at 256).

    `encoder`: "sam_med2d" (the paper's) or "lite_medsam" (LiteMedSAM's encoder, prompt encoder and
    decoder; `image_size` 256 only, `foundation_checkpoint` "default" = the official weights).
    `pixel_mean` / `pixel_std`: the encoder's input normalisation, default its own (ImageNet; LiteMedSAM 0 / 1).
    `embedding_cache_dir`: keep the image encoder's embeddings there (`FrozenEncoderCache`: the encoder
    must be frozen when it runs); None: no cache.

    `checkpoint`: a trained SAM-AutoMed file `{'model': state_dict}`, loaded strictly; the
    foundation and backbone files are then not read. Otherwise `foundation_checkpoint` (SAM-Med2D
    weights as converted by `extract_sam_med2d_weights`) and `backbone_weights` (torchvision's
    MobileNetV3 ImageNet file) initialise the model; None: random, with a warning.
    `encoder_*`: a smaller ViT (tiny test models).
    """
    checkpoint, foundation = none_if_null(checkpoint), none_if_null(foundation_checkpoint)
    prompt_attention = as_bool(prompt_attention, "prompt_attention")
    vit_size = {
        "encoder_depth": encoder_depth,
        "encoder_embed_dim": encoder_embed_dim,
        "encoder_num_heads": encoder_num_heads,
    }
    check_encoder(encoder, image_size, "SAM-AutoMed", **vit_size)
    lite = encoder == "lite_medsam"
    mean = (0.0 if lite else IMAGENET_MEAN) if pixel_mean is None else pixel_mean
    std = (1.0 if lite else IMAGENET_STD) if pixel_std is None else pixel_std
    if lite:
        with silenced(build_lite_medsam.__module__, checkpoint is not None):
            sam = build_lite_medsam(None if checkpoint else foundation, device)
    else:
        sam = _sam_med2d(checkpoint, foundation, variant, image_size, device, mean, std, vit_size)
    with torch.device(device):
        generator = MobileNetPromptGenerator(
            num_classes,
            num_prompt_tokens,
            backbone,
            None if checkpoint else backbone_weights,
            prompt_attention,
            tuple(sam.prompt_encoder.image_embedding_size),
            sam.prompt_encoder.embed_dim,
        )
    with torch.no_grad():  # start from the foundation model's "no mask" dense prompt
        generator.dense_bias.copy_(sam.prompt_encoder.no_mask_embed.weight[0])
    model = SAMAutoMed(
        sam.image_encoder,
        sam.prompt_encoder,
        sam.mask_decoder,
        generator,
        mean,
        std,
    )
    cache_dir = none_if_null(embedding_cache_dir)
    if cache_dir is not None:
        model.embedding_cache = FrozenEncoderCache(cache_dir, "SAM-AutoMed")
    if checkpoint is not None:
        load_model_weights(model, checkpoint)
    elif none_if_null(backbone_weights) is None:
        logger.warning(
            "SAM-AutoMed prompt generator: MobileNetV3-%s with RANDOM weights (backbone_weights is null)", backbone
        )
    return model.to(device).eval()


def _sam_med2d(checkpoint, foundation, variant, image_size, device, pixel_mean, pixel_std, vit_size) -> SAMSegmenter:
    """SAM-Med2D (adapters) with `foundation` weights unless a trained `checkpoint` will replace them."""
    if checkpoint is None and foundation is not None and not Path(foundation).is_file():
        raise FileNotFoundError(
            f"SAM-Med2D checkpoint {foundation} not found: fetch sam-med2d_b.pth with `python -m monai.bundle "
            "download_large_files --bundle_path <bundle>`, then convert it once with "
            f"monaiseg.networks.extract_sam_med2d_weights({str(Path(foundation).with_name('sam-med2d_b.pth'))!r}, "
            f"{str(foundation)!r}, trust=True) (the release pickles its optimizer)"
        )
    with silenced(build_sam_segmenter.__module__, checkpoint is not None):  # no misleading random-init warning
        return build_sam_segmenter(
            variant,
            image_size,
            checkpoint=None if checkpoint else foundation,
            encoder_adapter=True,
            device=device,
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
            **vit_size,
        )
