"""MedSAM input preparation that MONAI lacks: per-slice min-max scaling and 2D boxes as object prompts.

MedSAM (MedSAM_Inference.py, its 3D inference and training data) min-max scales every 2D image it
gives the network, over all three channels, (x - min) / max(max - min, 1e-8); a volume is scaled
slice by slice after the CT window. 2D images enter the bundle as one-slice volumes (C, X, Y, 1), so
one transform serves both.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monaiseg.prompts import ObjectPrompt
from monaiseg.utils.batch import source_name


class SliceMinMaxd(MapTransform):
    """Scale each slice [..., k] of a (C, H, W, D) volume to [0, 1] by its own min and max over all
    channels and pixels, (x - min) / max(max - min, eps): MedSAM's per-image normalisation (a
    constant slice becomes 0). float32 out, MetaTensor metadata kept."""

    def __init__(self, keys: KeysCollection, eps: float = 1e-8, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.eps = eps

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            img = torch.as_tensor(d[key]).to(torch.float32)
            if img.ndim != 4:
                raise ValueError(
                    f"{source_name(d, key)}: per-slice scaling needs a (C, H, W, D) volume, "
                    f"got shape {tuple(img.shape)}"
                )
            low = img.amin(dim=(0, 1, 2), keepdim=True)
            high = img.amax(dim=(0, 1, 2), keepdim=True)
            d[key] = (img - low) / (high - low).clamp_min(self.eps)
        return d


class BoxPromptsd(MapTransform):
    """Boxes (K, 4) as (x0, y0, x1, y1) (from `LoadBoxesd`) -> a list of `ObjectPrompt`, objects
    1..K in file order, on slice 0 (a 2D image as a one-slice volume). Prompt lists (e.g. from
    `KeySlicePromptsd`) and missing keys pass through; no boxes at all raises, naming the image."""

    def __init__(self, keys: KeysCollection = "prompts", image_key: str = "image"):
        super().__init__(keys, allow_missing_keys=True)
        self.image_key = image_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            if isinstance(d[key], list):
                continue
            boxes = torch.as_tensor(d[key], dtype=torch.float32).reshape(-1, 4)
            if len(boxes) == 0:
                raise ValueError(f"{source_name(d, self.image_key)}: the box file lists no boxes")
            d[key] = [
                ObjectPrompt(obj_id=i + 1, frame=0, box=tuple(float(v) for v in box)) for i, box in enumerate(boxes)
            ]
        return d
