"""Dataset files: MONAI-style datalists, deterministic splits and NIfTI/JSON writes (atomic, through
`monaiseg.utils.atomic_outputs`).

A datalist is ``{"training": [{"image": rel, "label": rel}, ...], "validation": [...], ...}``
with paths relative to the dataset directory; MONAI reads it with
``monai.data.load_decathlon_datalist(path, data_list_key=..., base_dir=dataset_dir)``.
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from monaiseg.utils.files import atomic_outputs

SPLIT_NAMES = ("training", "validation", "testing")


def save_nifti(array: np.ndarray, spacing: Sequence[float] | np.ndarray, path: str | os.PathLike) -> Path:
    """Save ``array`` (x, y, z) as NIfTI with affine ``diag(spacing)`` (mm, RAS, origin 0)."""
    affine = np.diag([*map(float, spacing), 1.0])
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm")
    nib.save(image, path)
    return Path(path)


def write_datalist(
    path: str | os.PathLike,
    splits: Mapping[str, list[dict]],
    labels: Mapping[int, str] | None = None,
) -> Path:
    """Write ``splits`` (split name -> list of ``{"image": rel, "label": rel}``) as JSON.

    ``labels`` (label value -> name) is stored under ``"labels"`` as in MSD ``dataset.json``.
    The file is written through :func:`atomic_outputs`, so a reader never sees a partial file.
    Returns the path written.
    """
    path = Path(path)
    content: dict = {
        name: [{k: Path(v).as_posix() if isinstance(v, os.PathLike) else v for k, v in item.items()} for item in items]
        for name, items in splits.items()
    }
    if labels is not None:
        content["labels"] = {str(k): v for k, v in labels.items()}
    with atomic_outputs(path) as (tmp,):
        tmp.write_text(json.dumps(content, indent=2) + "\n")
    return path


def split_cases(
    items: Sequence,
    fractions: Sequence[float] | Mapping[str, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> dict[str, list]:
    """Shuffle ``items`` with a fixed ``seed`` and cut them into named splits.

    ``fractions`` is a mapping split name -> fraction, or a sequence of up to three
    fractions for ``("training", "validation", "testing")``. Fractions must be in [0, 1]
    and sum to 1. Sizes follow the largest-remainder rule; a split with a positive fraction
    gets at least one item when there are enough items. Each item lands in exactly one split,
    and inside a split items keep their input order.
    """
    if not isinstance(fractions, Mapping):
        if len(fractions) > len(SPLIT_NAMES):
            raise ValueError(f"at most {len(SPLIT_NAMES)} unnamed fractions, got {list(fractions)}")
        fractions = dict(zip(SPLIT_NAMES, fractions))
    if len(items) == 0:
        raise ValueError("split_cases: no items to split")
    if any(not 0 <= f <= 1 for f in fractions.values()) or not math.isclose(sum(fractions.values()), 1.0, abs_tol=1e-6):
        raise ValueError(f"split fractions must be in [0, 1] and sum to 1, got {dict(fractions)}")

    n = len(items)
    exact = {name: f * n for name, f in fractions.items()}
    counts = {name: math.floor(v) for name, v in exact.items()}
    by_remainder = sorted(exact, key=lambda name: exact[name] - counts[name], reverse=True)
    for name in by_remainder[: n - sum(counts.values())]:
        counts[name] += 1
    for name in fractions:  # give every non-empty fraction one item, taken from the largest split
        largest = max(counts, key=counts.__getitem__)
        if fractions[name] > 0 and counts[name] == 0 and counts[largest] > 1:
            counts[name], counts[largest] = 1, counts[largest] - 1

    order = list(range(n))
    random.Random(seed).shuffle(order)
    splits, start = {}, 0
    for name, count in counts.items():
        splits[name] = [items[i] for i in sorted(order[start : start + count])]
        start += count
    return splits


def datalist_items(
    datalist: str | os.PathLike, base_dir: str | os.PathLike, keys: Sequence[str], optional_keys: Sequence[str] = ()
) -> list[dict]:
    """Items of several datalist splits (e.g. cell data + mixed generic data), paths resolved
    against ``base_dir`` as MONAI's ``load_decathlon_datalist`` does; a split in
    ``optional_keys`` may be absent from the file, one in ``keys`` may not."""
    from monai.data import load_decathlon_datalist

    content = json.loads(Path(datalist).read_text())
    items = []
    for key in [*keys, *optional_keys]:
        if key not in content and key in optional_keys:
            continue
        if key not in content:
            raise ValueError(f"{datalist}: no {key!r} list (found {sorted(content)})")
        items += load_decathlon_datalist(datalist, data_list_key=key, base_dir=base_dir)
    return items
