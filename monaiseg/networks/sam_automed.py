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
from monaiseg.networks.sam2_segmenter import IMAGENET_MEAN, IMAGENET_STD
from monaiseg.networks.sam_builder import build_sam_segmenter
from monaiseg.networks.sam_segmenter import SAMSegmenter
from monaiseg.utils.config import as_bool, none_if_null, silenced

logger = logging.getLogger(__name__)


class SAMAutoMed(SAMSegmenter):
    """SAM-Med2D image encoder + mask decoder driven by a `MobileNetPromptGenerator`."""

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

    def forward(self, images: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        """Images (B, 1|3, H, W) in [0, 1] -> class logits (B, C + 1, H, W), channel 0 background (0)."""
        height, width = images.shape[-2:]
        embeddings, _ = self.encode_images(images)  # (B, 256, h, w)
        sparse, dense = self.prompt_generator(self.normalize_images(images))  # (B, C, N, 256), (B, C, 256, h, w)
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
    pixel_mean: float | Sequence[float] = IMAGENET_MEAN,
    pixel_std: float | Sequence[float] = IMAGENET_STD,
    encoder_depth: int | None = None,
    encoder_embed_dim: int | None = None,
    encoder_num_heads: int | None = None,
    device: str | torch.device = "cpu",
) -> SAMAutoMed:
    """A `SAMAutoMed` for `num_classes` classes at `image_size` (SAM-Med2D: vit_b at 256).

    `checkpoint`: a trained SAM-AutoMed file `{'model': state_dict}`, loaded strictly; the
    foundation and backbone files are then not read. Otherwise `foundation_checkpoint` (SAM-Med2D
    weights as converted by `extract_sam_med2d_weights`) and `backbone_weights` (torchvision's
    MobileNetV3 ImageNet file) initialise the model; None: random, with a warning.
    `encoder_*`: a smaller ViT (tiny test models).
    """
    checkpoint, foundation = none_if_null(checkpoint), none_if_null(foundation_checkpoint)
    prompt_attention = as_bool(prompt_attention, "prompt_attention")
    if checkpoint is None and foundation is not None and not Path(foundation).is_file():
        raise FileNotFoundError(
            f"SAM-Med2D checkpoint {foundation} not found: fetch sam-med2d_b.pth with `python -m monai.bundle "
            "download_large_files --bundle_path <bundle>`, then convert it once with "
            f"monaiseg.networks.extract_sam_med2d_weights({str(Path(foundation).with_name('sam-med2d_b.pth'))!r}, "
            f"{str(foundation)!r}, trust=True) (the release pickles its optimizer)"
        )
    with silenced(build_sam_segmenter.__module__, checkpoint is not None):  # no misleading random-init warning
        sam = build_sam_segmenter(
            variant,
            image_size,
            checkpoint=None if checkpoint else foundation,
            encoder_adapter=True,
            device=device,
            pixel_mean=pixel_mean,
            pixel_std=pixel_std,
            encoder_depth=encoder_depth,
            encoder_embed_dim=encoder_embed_dim,
            encoder_num_heads=encoder_num_heads,
        )
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
    with torch.no_grad():  # start from SAM-Med2D's "no mask" dense prompt
        generator.dense_bias.copy_(sam.prompt_encoder.no_mask_embed.weight[0])
    model = SAMAutoMed(sam.image_encoder, sam.prompt_encoder, sam.mask_decoder, generator, pixel_mean, pixel_std)
    if checkpoint is not None:
        load_model_weights(model, checkpoint)
    elif none_if_null(backbone_weights) is None:
        logger.warning(
            "SAM-AutoMed prompt generator: MobileNetV3-%s with RANDOM weights (backbone_weights is null)", backbone
        )
    return model.to(device).eval()
