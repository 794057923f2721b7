"""Naming the input in error messages."""

from __future__ import annotations

from collections.abc import Hashable, Mapping


def source_name(data: Mapping, key: Hashable) -> str:
    """The file the item under `key` came from (MetaTensor meta "filename_or_obj"), else the key."""
    meta = getattr(data.get(key), "meta", None) or {}
    return str(meta.get("filename_or_obj", key))
