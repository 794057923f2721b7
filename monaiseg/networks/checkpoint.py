"""Strict state-dict loading with one clear error listing every mismatch."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch


class CheckpointMismatchError(ValueError):
    """A checkpoint whose keys or shapes do not match the model."""


def _listing(title: str, names: list[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit]) + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")
    return f"\n  {title} ({len(names)}): {shown}"


def load_state_dict_strict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """`model.load_state_dict(state_dict, strict=True)`, raising `CheckpointMismatchError` that
    lists missing keys, unexpected keys and shape mismatches together, naming `source`."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong_shape = [
        f"{k} {tuple(state_dict[k].shape)} != {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or wrong_shape:
        message = f"checkpoint {source} does not match {type(model).__name__}:"
        for title, names in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", wrong_shape),
        ):
            if names:
                message += _listing(title, names)
        raise CheckpointMismatchError(message)
    model.load_state_dict(state_dict, strict=True)


def read_checkpoint(path: str | Path, what: str = "model") -> dict[str, torch.Tensor]:
    """The state dict of a `{'model': state_dict}` file, read with `weights_only=True`; clear
    errors naming the file (and `what` it should hold) when it is absent, unreadable or in another layout."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.name == "model.pt":
            hint = "; train the bundle first (configs/train.json) or set `checkpoint` to a released model"
        elif path.parent.name == "models":
            hint = f"; fetch it with: python -m monai.bundle download_large_files --bundle_path {path.parent.parent}"
        raise FileNotFoundError(f"{what} checkpoint {path} not found{hint}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{what} checkpoint {path} cannot be read as a weights-only torch file: {exc}") from exc
    if not isinstance(content, dict) or not isinstance(content.get("model"), dict):
        keys = list(content)[:5] if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"{what} checkpoint {path} is not in the {{'model': state_dict}} layout (found {keys})")
    return content["model"]


def load_model_weights(model: torch.nn.Module, checkpoint: str | Path | None) -> torch.nn.Module:
    """Load a `{'model': state_dict}` file strictly into `model`; None (or "none"/"null"/"", as
    the bundle CLI cannot pass None) keeps the model's initial weights."""
    if checkpoint is None or (isinstance(checkpoint, str) and checkpoint.strip().lower() in ("", "none", "null")):
        return model
    load_state_dict_strict(model, read_checkpoint(checkpoint, type(model).__name__), source=str(checkpoint))
    return model
