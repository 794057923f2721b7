"""Collation that carries per-sample prompt lists through MONAI engines."""

from __future__ import annotations

from collections.abc import Sequence

from monai.data import list_data_collate

from monaiseg.prompts import prompts_to_json


def collate_with_prompts(batch: Sequence[dict], keys: Sequence[str] = ("prompts",)) -> dict:
    """`list_data_collate` for everything but `keys`, which become one JSON string per sample
    (MONAI's collate/decollate cannot handle prompt objects; strings pass through both)."""
    kept = {k: [prompts_to_json(item[k]) for item in batch] for k in keys if k in batch[0]}
    collated = list_data_collate([{k: v for k, v in item.items() if k not in kept} for item in batch])
    collated.update(kept)
    return collated
