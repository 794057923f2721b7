"""LoRA on the fused q/k/v projection of ViT / Hiera attention (sam2 and segment-anything).

Both sam2's Hiera `MultiScaleAttention.qkv` and segment-anything's `Attention.qkv` are one
`nn.Linear(dim, 3 * d)` whose output is laid out [q | k | v]. `FusedQKVLoRA` adds a low-rank
update to a chosen subset of those three slices (BloodCellSAM2: q and k; SAMed / HF-SAM: q and
v) while keeping the layer's own `weight` / `bias`, so the official state-dict keys
(`...attn.qkv.weight`, `...attn.qkv.bias`) are unchanged and official checkpoints still load.

peft's LoRA adapts a whole Linear; it cannot restrict the update to slices of a fused output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

QKV_SLICES = ("q", "k", "v")


class FusedQKVLoRA(nn.Linear):
    """`nn.Linear(in_features, 3 * d)` ([q | k | v] output) with LoRA on the `targets` slices.

    For a target slice s: out_s = W_s x + b_s + scale * B_s A_s x, scale = alpha / rank.
    Parameters: `weight` (3d, in), `bias` (3d) as in nn.Linear; `lora_a[s]` (rank, in),
    Kaiming-uniform, and `lora_b[s]` (d, rank), zero, so the layer equals the plain Linear at
    init. State-dict keys: `weight`, `bias`, `lora_a.<s>`, `lora_b.<s>`.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        rank: int,
        alpha: float,
        targets: Sequence[str] = ("q", "k"),
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        if out_features % 3:
            raise ValueError(f"a fused q/k/v projection has 3 * d outputs, got {out_features}")
        if rank < 1:
            raise ValueError(f"LoRA rank must be >= 1, got {rank}")
        unknown = [t for t in targets if t not in QKV_SLICES]
        if unknown or not targets or len(set(targets)) != len(targets):
            raise ValueError(f"LoRA targets must be distinct names among {QKV_SLICES}, got {tuple(targets)}")
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        self.rank, self.alpha, self.scale = rank, alpha, alpha / rank
        self.targets = tuple(t for t in QKV_SLICES if t in targets)
        dim = out_features // 3
        factory = {"device": device, "dtype": dtype}
        self.lora_a = nn.ParameterDict(
            {t: nn.Parameter(torch.empty(rank, in_features, **factory)) for t in self.targets}
        )
        self.lora_b = nn.ParameterDict({t: nn.Parameter(torch.zeros(dim, rank, **factory)) for t in self.targets})
        self.reset_lora_parameters()

    def reset_lora_parameters(self) -> None:
        """A Kaiming-uniform (as nn.Linear and the LoRA reference code), B zero: no change at init."""
        for t in self.targets:
            nn.init.kaiming_uniform_(self.lora_a[t], a=math.sqrt(5))
            nn.init.zeros_(self.lora_b[t])

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, rank: int, alpha: float, targets: Sequence[str] = ("q", "k")
    ) -> FusedQKVLoRA:
        """Wrap `linear`, sharing its `weight` / `bias` Parameters (same tensors, same requires_grad)."""
        module = cls(
            linear.in_features,
            linear.out_features,
            rank,
            alpha,
            targets,
            bias=linear.bias is not None,
            device=linear.weight.device,
            dtype=linear.weight.dtype,
        )
        module.weight = linear.weight
        module.bias = linear.bias
        return module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., 3d); non-target slices are exactly the plain Linear's."""
        out = F.linear(x, self.weight, self.bias)
        parts = out.chunk(3, dim=-1)
        return torch.cat(
            [
                part + F.linear(F.linear(x, self.lora_a[s]), self.lora_b[s]) * self.scale if s in self.targets else part
                for s, part in zip(QKV_SLICES, parts)
            ],
            dim=-1,
        )

    def merged_weight(self) -> torch.Tensor:
        """W + scale * B @ A in the target slices, (3d, in_features), detached."""
        with torch.no_grad():
            parts = list(self.weight.chunk(3, dim=0))
            for i, s in enumerate(QKV_SLICES):
                if s in self.targets:
                    parts[i] = parts[i] + self.scale * (self.lora_b[s] @ self.lora_a[s])
            return torch.cat(parts, dim=0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, rank={self.rank}, alpha={self.alpha}, targets={self.targets}"


def add_qkv_lora(
    blocks: Sequence[nn.Module],
    rank: int,
    alpha: float,
    targets: Sequence[str] = ("q", "k"),
    last_n: int | None = None,
) -> list[str]:
    """Replace `block.attn.qkv` by a `FusedQKVLoRA` in the last `last_n` (None: all) `blocks`
    (sam2: `image_encoder.trunk.blocks`; segment-anything: `image_encoder.blocks`).

    Returns the wrapped modules' names relative to `blocks` (e.g. ["8.attn.qkv", ...]).
    Nothing is changed when an argument or a block is invalid (ValueError).
    """
    total = len(blocks)
    count = total if last_n is None else last_n
    if not 1 <= count <= total:
        raise ValueError(f"last_n must be in 1..{total} (the number of blocks) or None, got {last_n}")
    chosen = list(range(total - count, total))
    layers = []  # (attn, its qkv) of the chosen blocks, all checked before any is changed
    for i in chosen:
        attn = getattr(blocks[i], "attn", None)
        qkv = getattr(attn, "qkv", None)
        if isinstance(qkv, FusedQKVLoRA):
            raise ValueError(f"block {i} already has LoRA on attn.qkv")
        if not isinstance(attn, nn.Module) or not isinstance(qkv, nn.Linear):
            raise ValueError(f"block {i} ({type(blocks[i]).__name__}) has no fused `attn.qkv` nn.Linear to put LoRA on")
        layers.append((attn, qkv))
    for attn, qkv in layers:
        attn.qkv = FusedQKVLoRA.from_linear(qkv, rank, alpha, targets)
    return [f"{i}.attn.qkv" for i in chosen]


def merge_lora(module: nn.Module) -> nn.Module:
    """In place: every `FusedQKVLoRA` in `module` becomes a plain nn.Linear holding the merged
    weight (same outputs, the original state-dict keys). Returns `module` (or the new Linear
    when `module` itself is a FusedQKVLoRA)."""
    if isinstance(module, FusedQKVLoRA):
        return _merged_linear(module)
    for name, child in list(module.named_modules()):
        if isinstance(child, FusedQKVLoRA):
            parent, _, attr = name.rpartition(".")
            setattr(module.get_submodule(parent), attr, _merged_linear(child))
    return module


def _merged_linear(lora: FusedQKVLoRA) -> nn.Linear:
    linear = nn.Linear(
        lora.in_features,
        lora.out_features,
        bias=lora.bias is not None,
        device=lora.weight.device,
        dtype=lora.weight.dtype,
    )
    with torch.no_grad():
        linear.weight.copy_(lora.merged_weight())
        if lora.bias is not None:
            linear.bias.copy_(lora.bias)
    linear.requires_grad_(lora.weight.requires_grad)
    return linear


def merged_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """`module.state_dict()` as if `merge_lora` had run (LoRA folded into each qkv weight, no
    `lora_` entries), without copying the module."""
    state = module.state_dict()
    for name, child in module.named_modules():
        if isinstance(child, FusedQKVLoRA):
            prefix = f"{name}." if name else ""
            state[f"{prefix}weight"] = child.merged_weight()
            for key in [k for k in state if k.startswith(f"{prefix}lora_")]:
                del state[key]
    return state
