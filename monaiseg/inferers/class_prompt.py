"""Training and inference of class-promptable SAM (SurgicalSAM, docs/methods.md#surgicalsam-and-ibr) in MONAI engines.

Training (`PrepareClassPromptBatch`, a `prepare_batch` of `SupervisedTrainer`): a batch of frames
(B, 3, S, S) with class-id maps (B, 1, S, S) becomes one row per (frame, class present), as
upstream trains: the frame's image embedding (frozen encoder, from the `EmbeddingCache` when one
is given), the class id, its binary mask and its class embedding (mean embedding under the mask).
With an `ImageBank` (IBR) a few bank rows are appended. The network is called as
`network(None, embeddings=..., class_ids=..., size=...)`, so DistributedDataParallel still wraps it.

Inference (`ClassPromptInferer`): every class is decoded for every frame; which masks enter the
class map depends on `query_mode`:
- "gt": the classes present in the ground truth (upstream's evaluation; needs labels);
- "all": the classes whose mask passes the presence rule: area (pixels with logit > 0) at least
  `min_area` of the frame and mean probability inside the mask at least `min_prob`.
The kept masks (logit > 0) are painted in increasing order of predicted IoU (upstream), so where
masks overlap the class with the highest predicted IoU wins. Frames (B, C, H, W) give (B, 1, H, W)
class maps; videos as `LoadVideod` loads them, (B, 3, W, H, T), give (B, 1, W, H, T).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from monai.inferers import Inferer

from monaiseg.data.embedding_cache import EmbeddingCache
from monaiseg.networks.sam_segmenter import SAMSegmenter
from monaiseg.networks.surgical_sam import SurgicalSAM
from monaiseg.utils.batch import plain_tensor, unwrap_model

QUERY_MODES = ("gt", "all")


def image_embeddings(model: SAMSegmenter, images: torch.Tensor, cache: EmbeddingCache | None = None) -> torch.Tensor:
    """Frozen SAM image embeddings (B, 256, h, w) of images (B, 1|3, H, W) in [0, 1]: through
    `cache` (keyed by the normalised encoder input) when given, else the encoder without autograd."""
    inputs = model.normalize_images(plain_tensor(images))
    if cache is not None:
        return cache.encode(inputs)
    with torch.no_grad():
        return model.image_encoder(inputs)


def compose_class_map(
    logits: torch.Tensor, quality: torch.Tensor, class_ids: torch.Tensor, keep: torch.Tensor
) -> torch.Tensor:
    """Class map (N, H, W) from mask logits (N, K, H, W) of classes `class_ids` (N, K) with predicted
    IoU `quality` (N, K): pixels with logit > 0 of the kept (N, K) masks, the highest quality on
    top (upstream paints in increasing quality); 0 elsewhere."""
    rank = quality.argsort(dim=1).argsort(dim=1).to(logits.dtype)  # 0: lowest quality
    score = torch.where((logits > 0) & keep[..., None, None], rank[..., None, None], -1.0)
    best, top = score.max(dim=1)
    classes = class_ids.gather(1, top.flatten(1)).view_as(top)
    return torch.where(best >= 0, classes, torch.zeros_like(classes))


def presence(logits: torch.Tensor, min_area: float, min_prob: float) -> torch.Tensor:
    """(N, K) bool: mask (logit > 0) covers >= `min_area` of the frame and its mean probability is >= `min_prob`."""
    mask = logits > 0
    area = mask.flatten(2).float().mean(-1)
    mean_prob = (torch.sigmoid(logits) * mask).flatten(2).sum(-1) / mask.flatten(2).sum(-1).clamp_min(1)
    return (area >= min_area) & (mean_prob >= min_prob)


class ClassPromptInferer(Inferer):
    """Class maps of frames or videos by class prompts (module docstring)."""

    def __init__(
        self,
        query_mode: str = "gt",
        min_area: float = 0.001,
        min_prob: float = 0.75,
        cache: EmbeddingCache | None = None,
        frames_per_batch: int = 4,
    ):
        if query_mode not in QUERY_MODES:
            raise ValueError(f"query_mode must be one of {QUERY_MODES}, got {query_mode!r}")
        self.query_mode, self.min_area, self.min_prob = query_mode, min_area, min_prob
        self.cache, self.frames_per_batch = cache, frames_per_batch

    def __call__(
        self, inputs: torch.Tensor, network, labels: torch.Tensor | None = None, *args, **kwargs
    ) -> torch.Tensor:
        if self.query_mode == "gt" and labels is None:
            raise ValueError(
                "query_mode 'gt' queries the classes of the ground truth, but no label was given; "
                "give labels (datalist 'label') or use query_mode 'all'"
            )
        model = cast(SurgicalSAM, unwrap_model(network))  # (or a network with its API)
        inputs = plain_tensor(inputs)
        labels = None if labels is None else plain_tensor(labels)
        if inputs.ndim == 4:
            return self.class_maps(model, inputs, labels)
        if inputs.ndim != 5:
            raise ValueError(f"expected frames (B, C, H, W) or videos (B, C, W, H, T), got {tuple(inputs.shape)}")
        batch, channels, width, height, frames = inputs.shape
        images = inputs.permute(0, 4, 1, 3, 2).reshape(-1, channels, height, width)
        if labels is not None:
            labels = labels.permute(0, 4, 1, 3, 2).reshape(-1, labels.shape[1], height, width)
        maps = torch.cat(
            [
                self.class_maps(
                    model,
                    images[i : i + self.frames_per_batch],
                    None if labels is None else labels[i : i + self.frames_per_batch],
                )
                for i in range(0, images.shape[0], self.frames_per_batch)
            ]
        )
        return maps.view(batch, frames, 1, height, width).permute(0, 2, 4, 3, 1)

    @torch.no_grad()
    def class_maps(self, model: SurgicalSAM, images: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        """Frames (N, C, H, W) in [0, 1] (+ class-id maps (N, 1, H, W) for "gt") -> class maps (N, 1, H, W)."""
        embeddings = image_embeddings(model, images, self.cache)
        queries = model.all_classes(images.shape[0], images.device)
        low_res, quality = model.decode_classes(embeddings, queries)
        logits = F.interpolate(low_res, size=images.shape[-2:], mode="bilinear", align_corners=False)
        if self.query_mode == "gt":
            if labels is None:
                raise ValueError("query_mode 'gt' needs the class-id maps (labels) of the frames")
            if labels.shape[-2:] != images.shape[-2:]:
                raise ValueError(
                    f"labels {tuple(labels.shape[-2:])} and frames {tuple(images.shape[-2:])} differ in size"
                )
            keep = F.one_hot(labels[:, 0].long().clamp_min(0), model.num_classes + 1)[..., 1:].flatten(1, 2).any(1)
        else:
            keep = presence(logits, self.min_area, self.min_prob)
        return compose_class_map(logits, quality, queries, keep)[:, None].to(images.dtype)
