"""Few-shot selection of training slices (HF-SAM / H-SAM: a random 10 % of the training slices)."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Mapping, Sequence


def _order_key(item: Mapping) -> tuple:
    return (
        str(item.get("case", "")),
        int(item.get("slice", -1)),
        str(item.get("image", "")),
        json.dumps(item, sort_keys=True, default=str),
    )


def few_shot_subset(items: Sequence[Mapping], fraction: float = 0.1, seed: int = 0) -> list[dict]:
    """``max(1, floor(len(items) * fraction))`` items drawn uniformly without replacement.

    As upstream (``random.sample`` of ``int(n * 0.1)`` slice names), but with its own seeded
    generator and on the items sorted by (case, slice, image) first, so the selection depends on
    ``seed`` and the set of items only, not on their order. Returned in that sorted order, as copies.
    Raises ``ValueError`` for an empty ``items`` or ``fraction`` outside (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError(
            f"few-shot fraction must be in (0, 1], got {fraction}: the selection would be "
            f"{'empty' if not fraction > 0 else 'larger than the training set'}"
        )
    if len(items) == 0:
        raise ValueError(
            "few-shot selection is empty: no training items to select from (check the datalist's 'training' list)"
        )
    ordered = sorted(items, key=_order_key)
    count = max(1, math.floor(len(ordered) * fraction + 1e-9))
    chosen = sorted(random.Random(seed).sample(range(len(ordered)), count))
    return [dict(ordered[i]) for i in chosen]
