"""MONAI inferer that segments volumes by SAM2 propagation from prompts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.engines.utils import PrepareBatch
from monai.inferers import Inferer
from scipy import ndimage

from monaiseg.transforms.prompts import mask_box

from .propagation import ObjectPrompt, prompts_from_json, propagate_volume


class PropagationInferer(Inferer):
    """`inferer(volumes, network, prompts=...)` -> label volumes (B, 1, I, J, K).

    volumes: (B, C, I, J, K) in [0, 1]; prompts: per volume a list of `ObjectPrompt` (or its
    JSON from `collate_with_prompts`), slices along K. The output keeps the input's metadata (affine), so it is saved in its geometry.
    """

    def __init__(self, offload_to_cpu: bool = True):
        super().__init__()
        self.offload_to_cpu = offload_to_cpu

    def __call__(self, inputs: torch.Tensor, network, prompts: Sequence[Sequence[ObjectPrompt] | str]) -> torch.Tensor:
        model = network.module if hasattr(network, "module") else network  # DistributedDataParallel
        if len(prompts) != inputs.shape[0]:
            raise ValueError(f"got {len(prompts)} prompt lists for a batch of {inputs.shape[0]} volumes")
        out = torch.zeros_like(inputs[:, :1], dtype=torch.float32)  # keeps MetaTensor metadata
        for b, volume in enumerate(inputs):
            volume_prompts = prompts_from_json(prompts[b]) if isinstance(prompts[b], str) else prompts[b]
            out[b, 0] = propagate_volume(model, volume, volume_prompts, offload_to_cpu=self.offload_to_cpu).to(out.device)
        return out


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

    def __call__(self, inputs: torch.Tensor, network, boxes: torch.Tensor | None = None,
                 density: torch.Tensor | None = None) -> torch.Tensor:
        model = network.module if hasattr(network, "module") else network
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


class PrepareOptionalBoxes(PrepareBatch):
    """Batch -> (image, label or None, (), {"boxes": ..., "density": ...}) for `InstancePromptInferer`,
    passing only the prompts the batch has (inference with or without a boxes file)."""

    def __init__(self, box_key: str = "boxes", density_key: str = "density"):
        self.box_key, self.density_key = box_key, density_key

    def __call__(self, batchdata, device=None, non_blocking: bool = False, **kwargs):
        move = dict(device=device, non_blocking=non_blocking)
        prompts = {name: batchdata[key].to(**move) for name, key in (("boxes", self.box_key), ("density", self.density_key))
                   if key in batchdata}
        label = batchdata.get("label")
        label = label.to(**move) if isinstance(label, torch.Tensor) else None  # a path when not loaded
        return batchdata["image"].to(**move), label, (), prompts


class CellTrackingInferer(Inferer):
    """`inferer(videos, network, boxes=...)` -> per-frame instance ids (B, 1, S0, S1, T), one id
    per cell for the whole video (SAM2 memory propagation from frame 0, `propagate_volume`).

    videos (B, C, S0, S1, T) in [0, 1]; boxes (B, K, 4) on frame 0 (as for `InstancePromptInferer`);
    without boxes the cells of frame 0 are found automatically (prompt-free mask, connected
    components). Cells that appear later (entering, daughters of a division) are not tracked.
    """

    def __call__(self, inputs: torch.Tensor, network, boxes: torch.Tensor | None = None) -> torch.Tensor:
        model = network.module if hasattr(network, "module") else network
        out = torch.zeros_like(inputs[:, :1], dtype=torch.float32)
        for b, video in enumerate(inputs):
            rows = None if boxes is None else boxes[b].reshape(-1, 4)
            if rows is None or len(rows) == 0:
                first = InstancePromptInferer()(video[..., 0].unsqueeze(0), model)[0, 0]
                ids = [v for v in torch.unique(first).tolist() if v > 0]
                rows = torch.as_tensor([mask_box((first == v).cpu().numpy()) for v in ids], dtype=torch.float32)
            if len(rows) == 0:
                continue  # nothing found on frame 0: an empty result
            prompts = [ObjectPrompt(obj_id=i + 1, frame=0, box=tuple(float(v) for v in row)) for i, row in enumerate(rows)]
            out[b, 0] = propagate_volume(model, video, prompts).to(out.device)
        return out
