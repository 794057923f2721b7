"""A datalist split that a workflow cannot run without (e.g. the training cases of a fine-tune)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def load_required_split(datalist: str | os.PathLike, key: str, base_dir: str | os.PathLike) -> list[dict]:
    """The items of split ``key`` of ``datalist``, paths resolved against ``base_dir`` as MONAI's
    ``load_decathlon_datalist`` does; a missing, unreadable or empty split raises ValueError naming the file."""
    from monai.data import load_decathlon_datalist

    path = Path(datalist)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: datalist not found.")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: datalist is not JSON ({e}).") from None
    if not isinstance(content, dict) or key not in content:
        found = sorted(content) if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"{path}: datalist has no {key!r} list (found {found}).")
    if not isinstance(content[key], list) or not content[key]:
        raise ValueError(f"{path}: the {key!r} split of the datalist is empty; nothing to run on.")
    return load_decathlon_datalist(path, data_list_key=key, base_dir=base_dir)
