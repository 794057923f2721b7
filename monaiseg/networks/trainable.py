"""Freezing policy from config and a report of trainable parameters."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

import torch


def _matches(name: str, pattern: str) -> bool:
    """fnmatch for a glob pattern (with *, ? or [), else a name prefix."""
    if any(c in pattern for c in "*?["):
        return fnmatchcase(name, pattern)
    return name.startswith(pattern)


def freeze_except(model: torch.nn.Module, trainable: Sequence[str] | None) -> torch.nn.Module:
    """Train only parameters matching one of `trainable` (None: train everything).

    A pattern with `*`, `?` or `[` is an fnmatch glob on the full parameter name (`*` also
    crosses dots: "*.lora_*", "sam_mask_decoder.*.adapter.*"); any other pattern is a name
    prefix ("memory_encoder"). Raises ValueError when a pattern matches no parameter (a typo
    would silently freeze all), changing nothing.
    """
    if trainable is None:
        model.requires_grad_(True)
        return model
    patterns = [trainable] if isinstance(trainable, str) else list(trainable)
    names = [name for name, _ in model.named_parameters()]
    unknown = [p for p in patterns if not any(_matches(n, p) for n in names)]
    if unknown:
        raise ValueError(f"trainable patterns {unknown} match no parameter of {type(model).__name__}")
    for name, param in model.named_parameters():
        param.requires_grad_(any(_matches(name, p) for p in patterns))
    return model


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Parameters with requires_grad (what the optimizer gets)."""
    return [p for p in model.parameters() if p.requires_grad]


def parameter_report(model: torch.nn.Module) -> dict[str, float]:
    """{'trainable': n, 'total': n, 'trainable_percent': %}."""
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": train, "total": total, "trainable_percent": 100.0 * train / max(total, 1)}
