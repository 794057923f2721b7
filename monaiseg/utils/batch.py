"""Batches, networks and their metadata as engines see them."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any, overload

import torch
from monai.data import MetaTensor


def unwrap_model(network: torch.nn.Module) -> torch.nn.Module:
    """The model inside a `DistributedDataParallel` (or `DataParallel`) wrapper, else `network` itself."""
    module = getattr(network, "module", None)
    return module if isinstance(module, torch.nn.Module) else network


@overload
def plain_tensor(x: torch.Tensor) -> torch.Tensor: ...


@overload
def plain_tensor(x: None) -> None: ...


def plain_tensor(x: torch.Tensor | None) -> torch.Tensor | None:
    """A MetaTensor as a plain tensor (slicing batched metadata is fragile); other values unchanged."""
    return x.as_tensor() if isinstance(x, MetaTensor) else x


def source_name(data: Mapping, key: Hashable) -> str:
    """The file the item under `key` came from (MetaTensor meta "filename_or_obj"), else the key."""
    meta = getattr(data.get(key), "meta", None) or {}
    return str(meta.get("filename_or_obj", key))


def batch_source_names(batch: Any) -> list[str]:
    """The distinct source files of a batch, a list of items or one dict (`filename_or_obj` of its
    MetaTensors or `*_meta_dict`s), in order of appearance."""
    items = batch if isinstance(batch, (list, tuple)) else [batch]
    files: list[str] = []
    for item in items:
        if not isinstance(item, Mapping):
            continue
        for key, value in item.items():
            meta = value.meta if isinstance(value, MetaTensor) else value if str(key).endswith("_meta_dict") else None
            names = meta.get("filename_or_obj") if isinstance(meta, Mapping) else None
            for name in [names] if isinstance(names, str) else list(names or []):
                if isinstance(name, str) and name not in files:
                    files.append(name)
    return files


def image_names(batch: Mapping, key: str = "image") -> list[str]:
    """One file name per image of a collated batch (B, ...) under `key` (its metadata), "?" when unknown."""
    image = batch[key]
    meta = getattr(image, "meta", {}) or {}
    names = meta.get("filename_or_obj", ["?"] * len(image))
    return [str(n) for n in (names if isinstance(names, (list, tuple)) else [names])]
