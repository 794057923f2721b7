"""Intensity preprocessing of MedSAM2 (docs/methods.md#medsam2) and an input sanity check.

CT: window (level, width) mapped to [0, 1]. MR: clip to the 0.5 / 99.5 percentiles of the
non-zero voxels, min-max to [0, 1], background (0) stays 0 (upstream MedSAM ``pre_CT_MR``;
upstream scales to [0, 255], we keep [0, 1] and leave the scaling to the network input).
"""

from __future__ import annotations

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import (
    ScaleIntensityRange,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentiles,
    ScaleIntensityRangePercentilesd,
)


class CTWindow(ScaleIntensityRange):
    """Clip HU to ``[level - width / 2, level + width / 2]`` and map to [0, 1]; any shape."""

    def __init__(self, level: float = 40.0, width: float = 400.0) -> None:
        super().__init__(a_min=level - width / 2, a_max=level + width / 2, b_min=0.0, b_max=1.0, clip=True)


class CTWindowd(ScaleIntensityRanged):
    """Dictionary version of :class:`CTWindow`."""

    def __init__(
        self, keys: KeysCollection, level: float = 40.0, width: float = 400.0, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(
            keys,
            a_min=level - width / 2,
            a_max=level + width / 2,
            b_min=0.0,
            b_max=1.0,
            clip=True,
            allow_missing_keys=allow_missing_keys,
        )


class MRPercentileNormalize(ScaleIntensityRangePercentiles):
    """Percentile clip and min-max to [0, 1] over the non-zero voxels only; zeros stay 0. Any shape."""

    def __init__(self, lower: float = 0.5, upper: float = 99.5) -> None:
        super().__init__(lower=lower, upper=upper, b_min=0.0, b_max=1.0, clip=True)

    def _normalize(self, img: NdarrayOrTensor) -> torch.Tensor:
        img = torch.as_tensor(img)  # the parent's __call__ passes a tensor already
        out = torch.zeros_like(img, dtype=torch.float32)
        foreground = img != 0
        if foreground.any():
            # the parent computes the percentiles of the 1-D foreground values, clips and scales them
            out[foreground] = torch.as_tensor(super()._normalize(img[foreground])).float()
        return out


class MRPercentileNormalized(ScaleIntensityRangePercentilesd):
    """Dictionary version of :class:`MRPercentileNormalize`."""

    def __init__(
        self, keys: KeysCollection, lower: float = 0.5, upper: float = 99.5, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, lower=lower, upper=upper, b_min=0.0, b_max=1.0, allow_missing_keys=allow_missing_keys)
        self.scaler = MRPercentileNormalize(lower=lower, upper=upper)
