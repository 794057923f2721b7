"""Inference from user prompts: boxes, points and / or a mask per object, merged into one label map."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar

import torch
from monai.inferers import Inferer

from monaiseg.inferers.decoding import decode_prompts, promptable_segmenter
from monaiseg.inferers.prompt_spec import PromptSpec

MASK_LOGIT = 8.0  # a binary mask prompt as decoder mask logits +-8 (sigmoid 0.9997 / 0.0003)


class ObjectPromptInferer(Inferer):
    """`inferer(images, network, prompts=...)` -> label maps (B, 1, H, W): each pixel takes the
    label of the object with the highest positive logit, 0 elsewhere.

    images (B, C, H, W) in [0, 1] (rows x columns, as the prompts' x / y); prompts: per image
    the JSON list of `read_object_prompts`, where an object may also carry "mask": (H, W) 0 / 1
    rows (e.g. the current segment, to refine), given to the decoder as its mask prompt (logits
    +-`MASK_LOGIT`) with the object's box and / or points. The image is encoded once; each object is
    decoded with its own prompts.
    """

    prompt_spec: ClassVar[PromptSpec] = PromptSpec(frozenset({"points", "box", "mask"}), frozenset({2}), "object_json")

    def __init__(self, multimask_output: bool = True):
        super().__init__()
        self.multimask_output = multimask_output

    def __call__(self, inputs: torch.Tensor, network, prompts: Sequence[str]) -> torch.Tensor:
        model = promptable_segmenter(network)
        if len(prompts) != inputs.shape[0]:
            raise ValueError(f"got {len(prompts)} prompt lists for a batch of {inputs.shape[0]} images")
        out = torch.zeros_like(inputs[:, :1], dtype=torch.float32)  # keeps MetaTensor metadata
        size = tuple(inputs.shape[-2:])
        device = inputs.device
        for b in range(inputs.shape[0]):
            embeddings, _ = model.encode_images(inputs[b : b + 1])
            logits, values = [], []
            for obj in json.loads(prompts[b]):
                box = None if obj["box"] is None else torch.tensor([obj["box"]], device=device)
                points = labels = None
                if obj["points"] is not None:
                    points = torch.tensor([obj["points"]], device=device)
                    labels = torch.tensor([obj["point_labels"]], device=device)
                mask = None
                if obj.get("mask") is not None:
                    mask = torch.tensor(obj["mask"], dtype=torch.float32, device=device)
                    if tuple(mask.shape) != size:
                        raise ValueError(f"mask prompt of shape {tuple(mask.shape)} for an image of {size}")
                    mask = ((2 * mask - 1) * MASK_LOGIT)[None, None]
                masks = decode_prompts(
                    model, embeddings, size, points, labels, box, mask, multimask_output=self.multimask_output
                )[0]
                logits.append(masks[0, 0])
                values.append(obj["label"])
            best, index = torch.stack(logits).max(dim=0)
            ids = torch.tensor(values, device=device, dtype=torch.float32)[index]
            out[b, 0] = torch.where(best > 0, ids, torch.zeros_like(ids)).to(out.device)
        return out
