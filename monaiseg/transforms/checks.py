"""Input checks: one clear error naming the file when an image or mask cannot be what a bundle expects."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import (
    MapTransform,
)

from monaiseg.utils.batch import source_name


class CheckImaged(MapTransform):
    """Raise one ``ValueError`` naming the file and the problem for an unusable image; else pass through.

    Problems: wrong spatial dimensionality (when ``spatial_dims`` is given, the channel-first image
    must be (C, X, Y[, Z]) with every spatial size > 1), a channel count not in ``channels``, a
    data type (bit depth) not in ``dtypes`` (load with ``dtype=None`` to keep the file's), NaN/Inf
    values, a constant image.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_dims: int | None = None,
        channels: Sequence[int] | None = None,
        dtypes: Sequence[str] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
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
                raise ValueError(
                    f"{name}: pixel type {dtype} (bit depth) not supported, expected {' or '.join(self.dtypes)}."
                )
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


class CheckMaskValuesd(MapTransform):
    """Raise one ``ValueError`` naming the file and the values when a mask holds values outside
    ``allowed`` (MONAI's label transforms map or filter unknown values silently)."""

    def __init__(self, keys: KeysCollection, allowed: Sequence[float], allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.allowed = {float(v) for v in allowed}

    def __call__(self, data: Mapping) -> dict:
        for key in self.key_iterator(data):
            values = {float(v) for v in torch.unique(torch.as_tensor(data[key])).tolist()}
            unknown = sorted(values - self.allowed)
            if unknown:
                shown = [int(v) if v.is_integer() else v for v in unknown]
                raise ValueError(
                    f"{source_name(data, key)}: mask values {shown} are not among the allowed "
                    f"{sorted(int(v) if v.is_integer() else v for v in self.allowed)}"
                )
        return dict(data)
