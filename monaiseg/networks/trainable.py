"""Freezing policy from config and a report of trainable parameters."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def freeze_except(model: torch.nn.Module, trainable: Sequence[str] | None) -> torch.nn.Module:
    """Train only parameters whose name starts with one of `trainable` (None: train everything).

    Raises ValueError when a prefix matches no parameter (a typo would silently freeze all).
    """
    if trainable is None:
        model.requires_grad_(True)
        return model
    prefixes = tuple(trainable)
    names = [name for name, _ in model.named_parameters()]
    unknown = [p for p in prefixes if not any(n.startswith(p) for n in names)]
    if unknown:
        raise ValueError(f"trainable prefixes {unknown} match no parameter of {type(model).__name__}")
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(prefixes))
    return model


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Parameters with requires_grad (what the optimizer gets)."""
    return [p for p in model.parameters() if p.requires_grad]


def parameter_report(model: torch.nn.Module) -> dict[str, float]:
    """{'trainable': n, 'total': n, 'trainable_percent': %}."""
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": train, "total": total, "trainable_percent": 100.0 * train / max(total, 1)}
