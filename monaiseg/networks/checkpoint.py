"""Strict state-dict loading with one clear error listing every mismatch."""

from __future__ import annotations

from collections.abc import Mapping

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
        for title, names in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", wrong_shape)):
            if names:
                message += _listing(title, names)
        raise CheckpointMismatchError(message)
    model.load_state_dict(state_dict, strict=True)
