"""Prompted SAM-family models whose image embeddings are computed once per image and reused.

`EmbeddingReuse(model, cache, identity)` stands in for a `SAMSegmenter` (SAM, MedSAM,
SAM-Med2D, LiteMedSAM) or `SAM2Segmenter` wherever an inferer takes the network: its
`encode_images` looks each image up in a `MemoryLRU` and runs the image encoder only on a miss;
`predict_masks` / `forward` are the model's own, run on the reused embeddings, so the first
request on an image pays for the encoder and later clicks only for the prompt encoder and the
mask decoder. Everything else is the model's (attribute access is forwarded), except that the
prompt encoder's dense positional encoding (fixed by the weights) is computed once, not per call.

Key: `(identity, content_key(image, identity, preprocess))`: `identity` names the weights version
(e.g. the bundle and its `model.pt` signature, or `encoder_identity(model)`), the content key hashes
the encoder input (the image as the bundle's transforms made it, (C, H, W)) with the model's own
preprocessing (class, input size, pixel mean / std). A retrained model gets a new identity, so its
old entries are never met (`MemoryLRU.discard(identity)` frees them at once).

Cached embeddings are shared between requests and never written: the same image and prompts give
the same mask logits, byte for byte, whether the embedding was computed now or reused.
"""

from __future__ import annotations

import json
from types import MethodType
from typing import Any

import torch

from monaiseg.data.embedding_cache import content_key, encoder_identity
from monaiseg.data.memory_cache import MemoryLRU
from monaiseg.networks.sam2_segmenter import SAM2Segmenter
from monaiseg.networks.sam_segmenter import SAMSegmenter
from monaiseg.utils.batch import plain_tensor


class CachedDensePE:
    """A SAM prompt encoder whose `get_dense_pe()` (1, C, h, w), a function of its weights only, is
    computed on the first call and returned after; everything else is the encoder's."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self._dense_pe: torch.Tensor | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.encoder, name)

    def __call__(self, *args, **kwargs):
        return self.encoder(*args, **kwargs)

    def get_dense_pe(self) -> torch.Tensor:
        if self._dense_pe is None:
            with torch.no_grad():
                self._dense_pe = self.encoder.get_dense_pe()
        return self._dense_pe


class EmbeddingReuse:
    """`model` with its image embeddings reused from `cache` (see the module docstring).

    `identity`: the weights version in the key (default: `encoder_identity(model)`, a hash of
    every weight). Images (B, 1|3, H, W) in [0, 1]; embeddings as `model.encode_images` returns them.
    """

    def __init__(self, model: SAMSegmenter | SAM2Segmenter, cache: MemoryLRU, identity: str | None = None):
        self.model = model
        self.cache = cache
        self.identity = identity or encoder_identity(model)
        self.preprocess = json.dumps(
            {
                "class": f"{type(model).__module__}.{type(model).__qualname__}",
                "image_size": int(model.image_size),
                "pixel_mean": model.pixel_mean.flatten().tolist(),
                "pixel_std": model.pixel_std.flatten().tolist(),
            },
            sort_keys=True,
        )
        if hasattr(model, "prompt_encoder"):  # SAM v1 family
            self.prompt_encoder = CachedDensePE(model.prompt_encoder)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)

    def key(self, image: torch.Tensor) -> tuple[str, str]:
        """Cache key of one image (C, H, W)."""
        return self.identity, content_key(image, self.identity, self.preprocess)

    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Image embeddings (B, 256, h, w) and high-res levels (SAM2; [] for SAM), each image
        encoded only when the cache does not hold it; the images it lacks are encoded in one call.
        B = 1 returns the cached tensors themselves."""
        images = plain_tensor(images)  # the key hashes values only
        keys = [self.key(image) for image in images]
        missing = [n for n, key in enumerate(keys) if self.cache.get(key) is None]
        batch: dict[int, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        if len(missing) > 1:
            embeddings, high_res = self.model.encode_images(images[missing])
            for i, n in enumerate(missing):  # copies: a cached view would hold the whole batch
                batch[n] = embeddings[i].clone(), [level[i].clone() for level in high_res]
        outputs = []
        for n, key in enumerate(keys):

            def encode(n=n):
                if n in batch:
                    return batch[n]
                embeddings, high_res = self.model.encode_images(images[n : n + 1])
                return embeddings[0], [level[0] for level in high_res]

            outputs.append(self.cache.get_or_compute(key, encode)[0])
        if len(outputs) == 1:
            return outputs[0][0].unsqueeze(0), [level.unsqueeze(0) for level in outputs[0][1]]
        return torch.stack([o[0] for o in outputs]), [torch.stack(levels) for levels in zip(*(o[1] for o in outputs))]

    def predict_masks(self, images: torch.Tensor, **prompts) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's `predict_masks` (mask logits (K, M, H, W), IoU (K, M)) on reused embeddings."""
        # the model's own method, bound to this stand-in (so it calls the reusing `encode_images`)
        return MethodType(type(self.model).predict_masks, self)(images, **prompts)

    def forward(self, images: torch.Tensor, **prompts) -> torch.Tensor:
        """Mask logits (K, M, H, W) for 2D images (B, 1|3, H, W), as the model's `forward`."""
        return self.predict_masks(images, **prompts)[0]

    __call__ = forward
