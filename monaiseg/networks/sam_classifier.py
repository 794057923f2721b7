"""SAM-MedCls (docs/methods.md#sam-medcls): SAM-Med2D's image encoder + channel and spatial attention +
pooling + a linear classifier, trained end to end.

    image (B, 1|3, H, W) in [0, 1]
      -> resize to S x S, ImageNet normalisation (as `SAMSegmenter.normalize_images`)
      -> SAM-Med2D ViT encoder with adapters          (B, 256, S/16, S/16)   16 x 16 at S = 256
      -> ChannelAttention: x * a_c,  a_c (B, 256, 1, 1)
      -> SpatialAttention: x * a_s,  a_s (B, 1, S/16, S/16)
      -> [global average ; global max] pooling          (B, 512)
      -> dropout -> linear                              (B, num_classes) logits

The attention pair follows the CBAM recipe (Woo et al., ECCV 2018; channel first, then spatial)
and is our own small implementation. `encoder_training` chooses what of the encoder learns:
"frozen" (nothing; it runs under no_grad and stays in eval mode), "adapters" (SAM-Med2D's `Adapter`
modules only) or "full"; the attention modules and the head always learn.

`encoder="lite_medsam"` (`lite_encoder.py`) puts LiteMedSAM's pretrained TinyViT in place of the ViT:
256 x 256 input with min-max [0, 1] intensities (no mean / std), a (B, 256, 64, 64) embedding; the
attention and pooling are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from segment_anything.modeling import ImageEncoderViT
from torch import nn

from monaiseg.networks.attention import ChannelAttention, SpatialAttention
from monaiseg.networks.checkpoint import CheckpointMismatchError
from monaiseg.networks.lite_encoder import FrozenEncoderCache, check_encoder
from monaiseg.networks.lite_medsam import build_lite_medsam
from monaiseg.networks.sam2_segmenter import IMAGENET_MEAN, IMAGENET_STD, set_pixel_normalization
from monaiseg.networks.sam_builder import ADAPTER_KEY, PROMPT_DIM, build_sam_segmenter
from monaiseg.networks.sam_segmenter import normalize_sam_images
from monaiseg.networks.tiny_vit import TinyViT
from monaiseg.utils.config import none_if_null

ENCODER_TRAINING = ("frozen", "adapters", "full")


class SAMClassifier(nn.Module):
    """SAM-MedCls: `forward(images)` (B, 1|3, H, W) in [0, 1] -> class logits (B, num_classes).

    `encoder`: "sam_med2d" (the paper's) or "lite_medsam" (LiteMedSAM's TinyViT, `image_size` 256 only).
    `checkpoint`: SAM-Med2D weights ({'model': state_dict} as written by
    `extract_sam_med2d_weights` from the released sam-med2d_b.pth), loaded strictly into a whole
    SAM-Med2D model of which only the image encoder is kept; for "lite_medsam" a LiteMedSAM file or
    "default" (the official weights); None/"null": random encoder (a warning is logged; e.g. when
    a trained classifier's own weights are loaded afterwards). `pixel_mean` / `pixel_std` default
    to the encoder's own (ImageNet for SAM-Med2D, 0 / 1 for LiteMedSAM). `embedding_cache_dir`: keep
    the frozen encoder's embeddings there (`FrozenEncoderCache`; "frozen" only), None: no cache.
    `attention=False` replaces both attention modules by identities (ablation). `encoder_*`
    override the ViT size (tiny models for tests), as in `build_sam_segmenter`; `device` "meta"
    builds it without memory (parameter counts).
    """

    # the input contract of SAMSegmenter: same buffers, same resize + normalisation arithmetic
    pixel_mean: torch.Tensor  # buffers (1, 3, 1, 1), registered in __init__
    pixel_std: torch.Tensor

    @property
    def image_size(self) -> int:
        """Side S of the square image the encoder sees (as `SAMSegmenter.image_size`)."""
        return self.image_encoder.img_size

    def set_normalization(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        """As `SAMSegmenter.set_normalization`."""
        set_pixel_normalization(self, mean, std)

    def normalize_images(self, images: torch.Tensor) -> torch.Tensor:
        """As `SAMSegmenter.normalize_images`: (B, 1|3, H, W) in [0, 1] -> (B, 3, S, S)."""
        return normalize_sam_images(images, self.image_size, self.pixel_mean, self.pixel_std)

    def __init__(
        self,
        num_classes: int,
        checkpoint: str | Path | None = None,
        encoder_training: str = "frozen",
        variant: str = "vit_b",
        image_size: int = 256,
        attention: bool = True,
        reduction: int = 16,
        spatial_kernel: int = 7,
        dropout: float = 0.2,
        pixel_mean: float | Sequence[float] | None = None,
        pixel_std: float | Sequence[float] | None = None,
        encoder_depth: int | None = None,
        encoder_embed_dim: int | None = None,
        encoder_num_heads: int | None = None,
        device: str | torch.device = "cpu",
        encoder: str = "sam_med2d",
        embedding_cache_dir: str | Path | None = None,
    ):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"SAMClassifier needs at least 2 classes, got num_classes={num_classes}")
        if encoder_training not in ENCODER_TRAINING:
            raise ValueError(f"encoder_training must be one of {ENCODER_TRAINING}, got {encoder_training!r}")
        vit_size = {
            "encoder_depth": encoder_depth,
            "encoder_embed_dim": encoder_embed_dim,
            "encoder_num_heads": encoder_num_heads,
        }
        check_encoder(encoder, image_size, "SAMClassifier (SAM-MedCls)", **vit_size)
        self.image_encoder: ImageEncoderViT | TinyViT
        default_mean: float | Sequence[float]
        default_std: float | Sequence[float]
        if encoder == "lite_medsam":
            if encoder_training == "adapters":
                raise ValueError("SAMClassifier: encoder 'lite_medsam' has no adapters; use 'frozen' or 'full'")
            self.image_encoder = build_lite_medsam(none_if_null(checkpoint), device).image_encoder
            default_mean, default_std = 0.0, 1.0
        else:
            self.image_encoder = _sam_med2d_encoder(
                none_if_null(checkpoint), variant=variant, image_size=image_size, device=device, **vit_size
            )
            default_mean, default_std = IMAGENET_MEAN, IMAGENET_STD
        self.register_buffer("pixel_mean", torch.zeros(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.ones(1, 3, 1, 1), persistent=False)
        self.set_normalization(
            default_mean if pixel_mean is None else pixel_mean, default_std if pixel_std is None else pixel_std
        )
        self.channel_attention = ChannelAttention(PROMPT_DIM, reduction) if attention else nn.Identity()
        self.spatial_attention = SpatialAttention(spatial_kernel) if attention else nn.Identity()
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * PROMPT_DIM, num_classes))
        self.encoder_training = encoder_training
        embedding_cache_dir = none_if_null(embedding_cache_dir)
        if embedding_cache_dir is not None and encoder_training != "frozen":
            raise ValueError(
                f"SAMClassifier: embedding_cache_dir needs encoder_training 'frozen', got {encoder_training!r}"
            )
        self.embedding_cache = (
            None if embedding_cache_dir is None else FrozenEncoderCache(embedding_cache_dir, "SAMClassifier")
        )
        self.image_encoder.requires_grad_(encoder_training == "full")
        if encoder_training == "adapters":
            for name, param in self.image_encoder.named_parameters():
                param.requires_grad_(ADAPTER_KEY in f".{name}")
        self.to(device)
        self.train()

    def train(self, mode: bool = True) -> SAMClassifier:
        """As `nn.Module.train`; a frozen encoder stays in eval mode (TinyViT's batch norm keeps its statistics)."""
        super().train(mode)
        if self.encoder_training == "frozen":
            self.image_encoder.eval()
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1|3, H, W) in [0, 1] -> image embedding (B, 256, S/16, S/16) (SAM-Med2D; LiteMedSAM: S/4);
        no autograd through the encoder when it is frozen."""
        if self.embedding_cache is not None:
            return self.embedding_cache.encode(self.image_encoder, self.normalize_images(images))
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.encoder_training != "frozen"):
            return self.image_encoder(self.normalize_images(images))

    def pool(self, embedding: torch.Tensor) -> torch.Tensor:
        """(B, 256, h, w) -> attention-weighted [average; max] features (B, 512)."""
        x = self.spatial_attention(self.channel_attention(embedding))
        return torch.cat([x.mean((2, 3)), x.amax((2, 3))], 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.encode(images)))


def _sam_med2d_encoder(checkpoint: str | Path | None, **size) -> ImageEncoderViT:
    """The image encoder of a SAM-Med2D model (adapters in every block) with `checkpoint` loaded
    strictly into the whole model; errors say which keys, which file and which model."""
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(
            f"SAM-Med2D checkpoint {checkpoint} not found. Fetch the release with `python -m monai.bundle "
            "download_large_files --bundle_dir <bundle>` and convert it once with "
            "monaiseg.networks.extract_sam_med2d_weights('models/sam-med2d_b.pth', "
            "'models/sam-med2d_b_weights.pth', trust=True), or set the checkpoint to null (random encoder)."
        )
    try:
        segmenter = build_sam_segmenter(checkpoint=checkpoint, encoder_adapter=True, **size)
    except CheckpointMismatchError as exc:
        raise CheckpointMismatchError(f"SAMClassifier (SAM-MedCls) needs a SAM-Med2D image encoder: {exc}") from None
    return segmenter.image_encoder
