"""Decoding prompts on image embeddings computed once: the step every prompted SAM inferer shares."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, cast

import torch
import torch.nn.functional as F

from monaiseg.utils.batch import unwrap_model


class PromptableSegmenter(Protocol):
    """What the prompted inferers call on a SAM-family network (`SAMSegmenter`, `SAM2Segmenter`, ...)."""

    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]: ...

    def predict_masks(
        self,
        images: torch.Tensor,
        boxes: torch.Tensor | None = None,
        points: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_inputs: torch.Tensor | None = None,
        multimask_output: bool | None = None,
        density: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


def promptable_segmenter(network: Any) -> PromptableSegmenter:
    """The network an engine passes (DistributedDataParallel unwrapped) as a `PromptableSegmenter`;
    not checked at run time (any object with the methods an inferer calls will do)."""
    return cast(PromptableSegmenter, unwrap_model(network))


def decode_prompts(
    model,
    embeddings: torch.Tensor,
    size: Sequence[int],
    points: torch.Tensor | None = None,
    point_labels: torch.Tensor | None = None,
    boxes: torch.Tensor | None = None,
    mask_inputs: torch.Tensor | None = None,
    multimask_output: bool = True,
    prompt_grad: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decode K = B * n prompt rows on B image embeddings (B, 256, h, w) computed once.

    Rows b * n .. b * n + n - 1 belong to image b. Prompts are in pixels of an (H, W) = `size`
    image: points (K, N, 2) (x, y) with point_labels (K, N), boxes (K, 4), mask_inputs (K, 1,
    4h, 4w) logits (a previous `low_res`). With `multimask_output` the mask with the highest
    predicted IoU of SAM's three is kept (SAM-Med2D). `prompt_grad` False: the prompt encoder
    runs without autograd (SAM-Med2D's click rounds). Returns mask logits (K, 1, H, W),
    low-res logits (K, 1, 4h, 4w) and predicted IoU (K, 1).
    """
    with torch.set_grad_enabled(prompt_grad and torch.is_grad_enabled()):
        sparse, dense = model.encode_prompts(tuple(size), boxes, points, point_labels, mask_inputs)
    low_res, iou = model.decode(embeddings, sparse, dense, multimask_output)
    if multimask_output:
        best = iou.argmax(dim=1, keepdim=True)
        low_res = torch.take_along_dim(low_res, best[:, :, None, None], dim=1)
        iou = torch.take_along_dim(iou, best, dim=1)
    masks = F.interpolate(low_res, size=tuple(size), mode="bilinear", align_corners=False)
    return masks, low_res, iou


def append_clicks(
    points: torch.Tensor | None, labels: torch.Tensor | None, new_points: torch.Tensor, new_labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clicks so far (K, N, 2) / (K, N) (or None) plus one more each -> (K, N + 1, 2) / (K, N + 1)."""
    if points is None:
        return new_points, new_labels
    if labels is None:
        raise ValueError("clicks so far need their labels (1 foreground, 0 background)")
    return torch.cat([points, new_points], dim=1), torch.cat([labels, new_labels], dim=1)
