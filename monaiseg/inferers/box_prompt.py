"""Box-prompted 2D segmentation: mask logits of images for boxes, the whole image or letterboxed
(MedSAM / LiteMedSAM), and the inferer that trains and validates box-prompted models on 2D images.

Boxes are (x0, y0, x1, y1) with x along W (columns), inclusive pixel indices. The network is any
module called as `network(images (B, C, H, W), boxes=(K, 4)) -> logits (K, M, H, W)` (`SAMSegmenter`),
channel 0 used; `network.predict_masks(images, boxes=...) -> (logits, iou (K, M))` gives the predicted IoU
too where the network has it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from monaiseg.transforms.medsam import Letterbox


def box_masks(network, images: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (K, 1, H, W) and the predicted IoU (K,) (None for a network without `predict_masks`)."""
    if hasattr(network, "predict_masks"):
        logits, iou = network.predict_masks(images, boxes=boxes)
        return logits[:, :1], iou[:, 0]
    return network(images, boxes=boxes)[:, :1], None


def letterbox_masks(
    network, image: torch.Tensor, boxes: Sequence[Sequence[float]], frame: Letterbox
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`box_masks` of one slice (C, H, W) letterboxed by `frame`, for K boxes already in its S x S
    input: logits (K, 1, H, W) brought back to the slice, and the predicted IoU (K,) or None."""
    device = next(network.parameters(), torch.empty(0)).device
    inputs = frame.image(image)[None].to(device)
    boxes_s = torch.tensor(boxes, dtype=torch.float32, device=device).reshape(-1, 4)
    logits, iou = box_masks(network, inputs, boxes_s)
    return frame.restore(logits), iou


def box_logits(
    network, images: torch.Tensor, boxes: torch.Tensor, transpose: bool = False, letterbox: int | None = None
) -> torch.Tensor:
    """Mask logits (K, 1, H, W) for images (B, C, H, W) and boxes (K, 4); K = B (one box per
    image) or B = 1 (K boxes on one image). `letterbox=S`: each image letterboxed to S x S
    (`Letterbox`), the boxes scaled with it, the logits brought back to (H, W). `transpose`: the
    network sees each image with its two axes swapped (`monaiseg.inferers.box_carry`). Differentiable
    in the network (training uses it)."""
    if isinstance(images, MetaTensor):
        images = images.as_tensor()
    boxes = torch.as_tensor(boxes, dtype=torch.float32, device=images.device).reshape(-1, 4)
    if transpose:
        images, boxes = images.transpose(-1, -2), boxes[:, [1, 0, 3, 2]]
    if letterbox is None:
        logits = network(images, boxes=boxes)[:, :1]
    else:
        frame = Letterbox(images.shape[-2], images.shape[-1], letterbox)
        rows = [boxes] if len(images) == 1 else boxes.split(1)
        logits = torch.cat(
            [
                letterbox_masks(network, image, [frame.box(b) for b in row.tolist()], frame)[0]
                for image, row in zip(images, rows)
            ]
        )
    return logits.transpose(-1, -2) if transpose else logits


class BoxPromptInferer(Inferer):
    """`inferer(images, network, boxes=...)` -> mask logits (B, 1, H, W): one box (x0, y0, x1, y1)
    per image, boxes (B, 4) (training and 2D validation of box-prompted models; `box_logits`,
    `letterbox=S` for raw images of any size)."""

    def __init__(self, transpose: bool = False, letterbox: int | None = None):
        super().__init__()
        self.transpose, self.letterbox = transpose, letterbox

    def __call__(self, inputs: torch.Tensor, network, boxes: torch.Tensor) -> torch.Tensor:
        return box_logits(network, inputs, boxes, self.transpose, self.letterbox)
