"""Intensity preprocessing of MedSAM2 (METHODS.md §2) and an input sanity check.

CT: window (level, width) mapped to [0, 1]. MR: clip to the 0.5 / 99.5 percentiles of the
non-zero voxels, min-max to [0, 1], background (0) stays 0 (upstream MedSAM ``pre_CT_MR``;
upstream scales to [0, 255], we keep [0, 1] and leave the scaling to the network input).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import (
    MapTransform,
    ScaleIntensityRange,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentiles,
    ScaleIntensityRangePercentilesd,
)

from .meta import source_name


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

    def _normalize(self, img: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(img, dtype=torch.float32)
        foreground = img != 0
        if foreground.any():
            # the parent computes the percentiles of the 1-D foreground values, clips and scales them
            out[foreground] = super()._normalize(img[foreground]).float()
        return out


class MRPercentileNormalized(ScaleIntensityRangePercentilesd):
    """Dictionary version of :class:`MRPercentileNormalize`."""

    def __init__(
        self, keys: KeysCollection, lower: float = 0.5, upper: float = 99.5, allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, lower=lower, upper=upper, b_min=0.0, b_max=1.0, allow_missing_keys=allow_missing_keys)
        self.scaler = MRPercentileNormalize(lower=lower, upper=upper)


class CheckImaged(MapTransform):
    """Raise one ``ValueError`` naming the file and the problem for an unusable image; else pass through.

    Problems: wrong spatial dimensionality (when ``spatial_dims`` is given, the channel-first image
    must be (C, X, Y[, Z]) with every spatial size > 1), a channel count not in ``channels``, a
    data type (bit depth) not in ``dtypes`` (load with ``dtype=None`` to keep the file's), NaN/Inf
    values, a constant image.
    """

    def __init__(self, keys: KeysCollection, spatial_dims: int | None = None, channels: Sequence[int] | None = None,
                 dtypes: Sequence[str] | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_dims = spatial_dims
        self.channels = None if channels is None else tuple(int(c) for c in channels)
        self.dtypes = None if dtypes is None else tuple(str(t) for t in dtypes)

    def check(self, img: torch.Tensor, name: str) -> None:
        """Raise a ``ValueError`` starting with ``name`` if ``img`` (C, *spatial) is unusable."""
        if self.spatial_dims is not None:
            shape = tuple(img.shape)
            if len(shape) != self.spatial_dims + 1 or min(shape[1:]) < 2:
                axes = ", ".join("XYZ"[: self.spatial_dims])
                raise ValueError(
                    f"{name}: not a {self.spatial_dims}D {'volume' if self.spatial_dims == 3 else 'image'}: "
                    f"shape {shape}, expected channel-first (C, {axes}) with every spatial size > 1."
                )
        if self.channels is not None and img.shape[0] not in self.channels:
            raise ValueError(f"{name}: {img.shape[0]} channels, expected {' or '.join(map(str, self.channels))}.")
        if self.dtypes is not None:
            dtype = str(img.dtype).replace("torch.", "")
            if dtype not in self.dtypes:
                raise ValueError(f"{name}: pixel type {dtype} (bit depth) not supported, expected {' or '.join(self.dtypes)}.")
        img = torch.as_tensor(img)
        if not torch.isfinite(img.float()).all():
            raise ValueError(f"{name}: image contains NaN or Inf values.")
        if img.numel() == 0 or img.max() == img.min():
            raise ValueError(f"{name}: image is empty or constant (all voxels equal), nothing to segment.")

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            self.check(d[key], source_name(d, key))
        return d
