"""Bottleneck adapters after the MLPs of a SAM / SAM2 mask decoder's two-way transformer.

The adapter is attached as a child `adapter` of each `mlp` and applied by a forward hook on
that mlp, instead of wrapping the mlp in a new container: wrapping would rename the existing
keys (`...mlp.layers.0.weight` -> `...mlp.0.layers.0.weight`) and official checkpoints would no
longer load. With the hook, the original keys stay and the adapter adds only
`...mlp.adapter.{down,up}.{weight,bias}`.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import nn


class BottleneckAdapter(nn.Module):
    """x + up(act(down(x))) on (..., dim): down dim -> hidden_dim, up hidden_dim -> dim.

    `up` is zero-initialised, so the adapter is exactly the identity before training.
    """

    def __init__(self, dim: int, hidden_dim: int, activation: type[nn.Module] = nn.GELU):
        super().__init__()
        self.down = nn.Linear(dim, hidden_dim)
        self.act = activation()
        self.up = nn.Linear(hidden_dim, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


def _apply_adapter(mlp: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: the mlp's output goes through its `adapter` child."""
    return cast(BottleneckAdapter, mlp.adapter)(output)


def add_mlp_adapters(decoder: nn.Module, hidden_dim: int, activation: type[nn.Module] = nn.GELU) -> list[str]:
    """Add a `BottleneckAdapter` after the MLP of every two-way transformer block of a mask
    decoder (`decoder.transformer.layers[i].mlp`: sam2's `MLP` or segment-anything's
    `MLPBlock`). Existing keys are kept (see the module docstring). Returns the adapters'
    names relative to `decoder`; raises ValueError if adapters are already there.
    """
    layers = getattr(getattr(decoder, "transformer", None), "layers", None)
    if not layers:
        raise ValueError(
            f"{type(decoder).__name__} has no `transformer.layers` (a SAM / SAM2 mask decoder is expected)"
        )
    for i, layer in enumerate(layers):
        mlp = getattr(layer, "mlp", None)
        if not isinstance(mlp, nn.Module):
            raise ValueError(f"transformer layer {i} has no `mlp` module")
        if hasattr(mlp, "adapter"):
            raise ValueError(f"transformer layer {i} already has an adapter after its mlp")
    names = []
    for i, layer in enumerate(layers):
        mlp = layer.mlp
        last = [m for m in mlp.modules() if isinstance(m, nn.Linear)][-1]
        mlp.adapter = BottleneckAdapter(last.out_features, hidden_dim, activation).to(
            last.weight.device, last.weight.dtype
        )
        mlp.register_forward_hook(_apply_adapter)
        names.append(f"transformer.layers.{i}.mlp.adapter")
    return names
