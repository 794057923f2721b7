"""Exchange between the ranks of a `torch.distributed` group: gradients and parameters for training loops that
do not use DistributedDataParallel, and per-case records of a sharded evaluation merged back into dataset order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch
import torch.distributed as dist

from monaiseg.utils.batch import unwrap_model

T = TypeVar("T")


def world_size() -> int:
    """Number of processes of the default group (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """This process's rank in the default group (0 without torch.distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def is_rank0() -> bool:
    """Whether this process writes the files of the group (True in one process)."""
    return rank() == 0


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


def _shard_sizes(total: int, world: int) -> list[int]:
    """Samples per rank of MONAI's `DistributedSampler(shuffle=False, even_divisible=False)`: r, r + N, ..."""
    return [len(range(r, total, world)) for r in range(world)]


def gather_in_dataset_order(items: Sequence[T]) -> list[T]:
    """Every rank's `items` (picklable, one per sample of the rank's shard, in shard order) merged in dataset
    order, on every rank; a copy of `items` in one process. The shards are MONAI's
    `DistributedSampler(shuffle=False, even_divisible=False)`: rank r of N holds samples r, r + N, r + 2N, ...,
    so interleaving the ranks' lists restores the order. A collective call: every rank must make it.
    ValueError when the lengths are not those of such shards."""
    world = world_size()
    if world == 1:
        return list(items)
    shards: list[list[T] | None] = [None] * world
    dist.all_gather_object(shards, list(items))
    sizes = [len(s or []) for s in shards]
    expected = _shard_sizes(sum(sizes), world)
    if sizes != expected:
        raise ValueError(
            f"cannot merge per-case records of {world} ranks: they hold {sizes} records, not one per sample of "
            f"DistributedSampler(shuffle=False, even_divisible=False) shards of {sum(sizes)} samples {expected}"
        )
    return [shards[i % world][i // world] for i in range(sum(sizes))]  # type: ignore[index]


def concatenated_to_dataset_order(rows: T) -> T:
    """Rows (a tensor, array or list with one row per sample) that were gathered by concatenating the ranks'
    shards (rank 0's samples, then rank 1's, ...: MONAI's `Cumulative.get_buffer`, `string_list_all_gather`)
    put back in dataset order, shards as in `gather_in_dataset_order`; `rows` unchanged in one process."""
    world = world_size()
    if world == 1:
        return rows
    total = len(rows)  # type: ignore[arg-type]
    position = [i for r in range(world) for i in range(r, total, world)]  # dataset index of each gathered row
    order = [0] * total
    for row, index in enumerate(position):
        order[index] = row
    if isinstance(rows, torch.Tensor):
        return rows[torch.as_tensor(order, device=rows.device)]  # type: ignore[return-value]
    if hasattr(rows, "shape"):  # numpy
        return rows[order]  # type: ignore[index]
    return [rows[i] for i in order]  # type: ignore[index, return-value]


def sum_over_ranks(value: float) -> float:
    """`value` summed over all ranks (itself in one process); a collective call."""
    world = world_size()
    if world == 1:
        return value
    values: list[float | None] = [None] * world
    dist.all_gather_object(values, float(value))
    return float(sum(v or 0.0 for v in values))
