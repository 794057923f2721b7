"""Gradient and parameter exchange for training loops that do not use DistributedDataParallel."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist

from monaiseg.utils.batch import unwrap_model


def world_size() -> int:
    """Number of processes of the default group (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sync_gradients(parameters: Sequence[torch.nn.Parameter]) -> None:
    """Average the gradients of `parameters` over all ranks (no-op in one process). A parameter
    without a gradient on some ranks counts as zero there (ranks may draw different prompts);
    one without a gradient on every rank keeps none, so the optimizer skips it as in one process."""
    world = world_size()
    if world == 1 or not parameters:
        return
    present = torch.tensor([p.grad is not None for p in parameters], dtype=torch.float32, device=parameters[0].device)
    dist.all_reduce(present)
    for param, count in zip(parameters, present.tolist()):
        if count == 0:
            continue
        if param.grad is None:
            param.grad = torch.zeros_like(param)
        dist.all_reduce(param.grad)
        param.grad /= world


def broadcast_parameters(model: torch.nn.Module) -> torch.nn.Module:
    """Copy rank 0's parameters and buffers to every rank (no-op in one process)."""
    if world_size() > 1:
        for tensor in unwrap_model(model).state_dict().values():
            dist.broadcast(tensor, src=0)
    return model
