"""The slice-feature cache of box carry: each slice of a volume is encoded once for all its objects,
`batch` slices per encoder call, and its features are kept only while a later slice of the run may
need them; each object's prompt is then decoded on them (`monaiseg.inferers.box_carry`).

For a network with `encode_images(images (B, C, h, w)) -> (embeddings (B, E, h', w'), high-res levels)`
and `predict_masks` (`SAMSegmenter`, or it wrapped in `EmbeddingReuse`).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MethodType

import torch

from monaiseg.inferers.embedding_reuse import EmbeddingReuse
from monaiseg.inferers.slice_views import SlicePrompt, WholeSlice

Features = tuple[torch.Tensor, list[torch.Tensor]]


def encodes_slices(network) -> bool:
    """Whether the network's image encoder can run apart from its decoder (`SliceFeatures`)."""
    return hasattr(network, "encode_images") and hasattr(network, "predict_masks")


class EncodedSlice:
    """A prompted network whose image encoder is replaced by one slice's features (`encode_images`'s
    output): its `predict_masks` (the model's own) runs the prompt encoder and the mask decoder only."""

    def __init__(self, network, features: Features):
        self.network, self.features = network, features
        self.model = network.model if isinstance(network, EmbeddingReuse) else network

    def __getattr__(self, name: str):
        return getattr(self.network, name)

    def encode_images(self, images: torch.Tensor) -> Features:
        return self.features

    def predict_masks(self, images: torch.Tensor, **prompts) -> tuple[torch.Tensor, torch.Tensor]:
        return MethodType(type(self.model).predict_masks, self)(images, **prompts)


class SliceFeatures:
    """Image features of the slices of a (C, H, W, D) volume (the network's view), encoded
    `batch` slices per encoder call (None: 4 on a GPU, 1 on a CPU) and held in `kept`."""

    def __init__(self, network, volume: torch.Tensor, slices: WholeSlice, batch: int | None):
        self.network, self.volume, self.slices = network, volume, slices
        self.kept: dict[int, Features] = {}
        self.device = next(network.parameters(), torch.empty(0)).device
        self.batch = max(1, int(batch)) if batch is not None else 4 if self.device.type == "cuda" else 1

    def get(self, k: int, ahead: Sequence[int]) -> Features:
        """Features of slice k; on a miss, k and the `ahead` slices not held yet in one encoder call."""
        if k not in self.kept:
            frames = [k] + [a for a in ahead if a not in self.kept][: self.batch - 1]
            images = torch.stack([self.slices.input(self.volume[..., f]) for f in frames]).to(self.device)
            embeddings, high_res = self.network.encode_images(images)
            for n, f in enumerate(frames):
                self.kept[f] = (embeddings[n : n + 1], [level[n : n + 1] for level in high_res])
        return self.kept[k]

    def clear(self) -> None:
        self.kept = {}

    def decode(
        self, k: int, ahead: Sequence[int], prompt: SlicePrompt, boxes: Sequence | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (K, 1, S, S) in the network's input frame and predicted IoU (K,) of one object's prompt on
        slice k: its box, clicks and mask prompt (previous low-res logits); `boxes` (K, 4): K rows,
        each of these boxes with the prompt's clicks (candidate boxes of a click, one decoder call)."""
        encoded = EncodedSlice(self.network, self.get(k, ahead))
        rows: dict[str, torch.Tensor] = {}
        boxes = [prompt.box] if boxes is None and prompt.box is not None else boxes
        count = len(boxes) if boxes else 1
        if boxes:
            rows["boxes"] = torch.tensor(boxes, dtype=torch.float32, device=self.device).reshape(-1, 4)
        if prompt.points:
            rows["points"] = torch.tensor([prompt.points] * count, dtype=torch.float32, device=self.device)
            rows["point_labels"] = torch.tensor([prompt.labels] * count, dtype=torch.int64, device=self.device)
        if prompt.mask is not None:
            rows["mask_inputs"] = prompt.mask[None].float().to(self.device).expand(count, -1, -1, -1)
        logits, iou = encoded.predict_masks(torch.empty((1, 1, *self.slices.size), device=self.device), **rows)
        return logits[:, :1], iou[:, 0]

    def masks(self, k: int, ahead: Sequence[int], prompt: SlicePrompt) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (1, 1, H, W) and predicted IoU (1,) of one object's prompt on slice k."""
        logits, iou = self.decode(k, ahead, prompt)
        return self.slices.restore(logits), iou
