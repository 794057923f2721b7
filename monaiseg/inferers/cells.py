"""Cell inferers of BloodCellSAM2: one instance per box prompt in an image (`InstancePromptInferer`) and cells
tracked through a video by SAM2 propagation (`CellTrackingInferer`)."""

from __future__ import annotations

from typing import ClassVar

import torch
from monai.inferers import Inferer
from scipy import ndimage

from monaiseg.inferers.decoding import promptable_segmenter
from monaiseg.inferers.prompt_spec import PromptSpec
from monaiseg.inferers.propagation import propagate_volume
from monaiseg.prompts import ObjectPrompt, mask_box


def instance_ids(logits: torch.Tensor) -> torch.Tensor:
    """Per-object mask logits (K, 1, H, W) -> instance map (H, W): each pixel takes the id
    (1..K) of the object with the highest logit, 0 where no logit is positive."""
    best, index = logits[:, 0].max(dim=0)
    return torch.where(best > 0, index + 1, torch.zeros_like(index)).to(torch.float32)


class InstancePromptInferer(Inferer):
    """`inferer(images, network, boxes=..., density=...)` -> instance maps (B, 1, H, W).

    images (B, C, H, W) in [0, 1]; boxes (B, K, 4) as (x0, y0, x1, y1) pixels, one object each
    (rows of NaN are padding); density (B, 1, h, w) optional density prior. Each box is decoded
    as one object; objects are merged by `instance_ids`. Without boxes (None or K = 0) the
    prompt-free mask is split into connected components (automatic mode).
    """

    prompt_spec: ClassVar[PromptSpec] = PromptSpec(frozenset({"box"}), frozenset({2}), "boxes", automatic=True)

    def __call__(
        self, inputs: torch.Tensor, network, boxes: torch.Tensor | None = None, density: torch.Tensor | None = None
    ) -> torch.Tensor:
        model = promptable_segmenter(network)
        out = torch.zeros_like(inputs[:, :1], dtype=torch.float32)  # keeps MetaTensor metadata
        for b, image in enumerate(inputs):
            image = image.unsqueeze(0)
            dens = None if density is None else density[b : b + 1]
            rows = None if boxes is None else boxes[b].reshape(-1, 4)
            if rows is not None:
                rows = rows[~torch.isnan(rows).any(dim=1)]
            if rows is None or len(rows) == 0:
                logits = model.predict_masks(image, density=dens)[0]
                components, _ = ndimage.label((logits[0, 0] > 0).cpu().numpy())
                out[b, 0] = torch.as_tensor(components, dtype=torch.float32).to(out.device)
                continue
            logits = model.predict_masks(image, boxes=rows, density=dens)[0]  # image encoded once for all rows
            out[b, 0] = instance_ids(logits).to(out.device)
        return out


class CellTrackingInferer(Inferer):
    """`inferer(videos, network, boxes=...)` -> per-frame instance ids (B, 1, S0, S1, T), one id
    per cell for the whole video (SAM2 memory propagation from frame 0, `propagate_volume`).

    videos (B, C, S0, S1, T) in [0, 1]; boxes (B, K, 4) on frame 0 (as for `InstancePromptInferer`);
    without boxes the cells of frame 0 are found automatically (prompt-free mask, connected
    components). Cells that appear later (entering, daughters of a division) are not tracked.
    """

    def __call__(self, inputs: torch.Tensor, network, boxes: torch.Tensor | None = None) -> torch.Tensor:
        model = promptable_segmenter(network)
        out = torch.zeros_like(inputs[:, :1], dtype=torch.float32)
        for b, video in enumerate(inputs):
            rows = None if boxes is None else boxes[b].reshape(-1, 4)
            if rows is None or len(rows) == 0:
                first = InstancePromptInferer()(video[..., 0].unsqueeze(0), model)[0, 0]
                ids = [v for v in torch.unique(first).tolist() if v > 0]
                rows = torch.as_tensor([mask_box((first == v).cpu().numpy()) for v in ids], dtype=torch.float32)
            if len(rows) == 0:
                continue  # nothing found on frame 0: an empty result
            prompts = [
                ObjectPrompt(obj_id=i + 1, frame=0, box=(float(x0), float(y0), float(x1), float(y1)))
                for i, (x0, y0, x1, y1) in enumerate(rows)
            ]
            out[b, 0] = propagate_volume(model, video, prompts).to(out.device)
        return out
