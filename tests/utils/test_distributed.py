"""`monaiseg.utils.distributed` in one process and in a real 2-process gloo group (forked, so nothing is
imported again): per-case records merged back into dataset order, MONAI's rank-after-rank order undone."""

from __future__ import annotations

import multiprocessing
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from monaiseg.utils import (
    concatenated_to_dataset_order,
    gather_in_dataset_order,
    is_rank0,
    rank,
    sum_over_ranks,
    world_size,
)


def _rank_main(rank_: int, world: int, store: Path, fn: Callable, out: Path) -> None:
    """Forked child: join the gloo group, run `fn(rank)`, pickle ("ok", result) or ("error", repr) to `out`."""
    code = 1
    try:
        torch.set_num_threads(1)  # torch's OpenMP pool does not survive a fork
        dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank_, world_size=world)
        try:
            result = ("ok", fn(rank_))
        except Exception as e:  # reported to the test
            result = ("error", f"{type(e).__name__}: {e}")
        dist.destroy_process_group()
        out.write_bytes(pickle.dumps(result))
        code = 0
    finally:
        os._exit(code)


def run_ranks(fn: Callable[[int], object], tmp_path: Path, world: int = 2, timeout: float = 120) -> list:
    """[("ok", fn(r)) or ("error", message) for each rank r] of `world` forked processes in one gloo group."""
    ctx = multiprocessing.get_context("fork")
    outs = [tmp_path / f"rank{r}.pkl" for r in range(world)]
    procs = [ctx.Process(target=_rank_main, args=(r, world, tmp_path / "store", fn, outs[r])) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    return [pickle.loads(o.read_bytes()) for o in outs]


def shard(items: list, rank_: int, world: int = 2) -> list:
    """Rank `rank_`'s items under DistributedSampler(shuffle=False, even_divisible=False)."""
    return items[rank_::world]


def test_one_process_is_rank_0_of_1_and_keeps_everything_as_it_is():
    rows = torch.arange(6).reshape(3, 2)
    assert (world_size(), rank(), is_rank0()) == (1, 0, True)
    assert gather_in_dataset_order(("a", "b")) == ["a", "b"]
    assert concatenated_to_dataset_order(rows) is rows
    assert sum_over_ranks(2.5) == 2.5


def test_two_ranks_merge_their_shards_in_dataset_order(tmp_path):
    cases = [{"name": f"case{i}", "png": bytes([i])} for i in range(5)]

    def body(r: int) -> dict:
        gathered = torch.tensor([0, 2, 4, 1, 3])  # what MONAI's Cumulative gives: rank 0's cases, then rank 1's
        return {
            "rank": (rank(), world_size(), is_rank0()),
            "merged": gather_in_dataset_order(shard(cases, r)),
            "tensor": concatenated_to_dataset_order(gathered * 10).tolist(),
            "array": concatenated_to_dataset_order(np.array([[0], [2], [4], [1], [3]]))[:, 0].tolist(),
            "list": concatenated_to_dataset_order(["c0", "c2", "c4", "c1", "c3"]),
            "seconds": sum_over_ranks(1.5 + r),
        }

    results = run_ranks(body, tmp_path)
    for r, (status, got) in enumerate(results):
        assert status == "ok", got
        assert got["rank"] == (r, 2, r == 0)
        assert got["merged"] == cases  # shards of 3 and 2 cases, back in order, on every rank
        assert got["tensor"] == [0, 10, 20, 30, 40]
        assert got["array"] == [0, 1, 2, 3, 4] and got["list"] == ["c0", "c1", "c2", "c3", "c4"]
        assert got["seconds"] == pytest.approx(4.0)


def test_records_that_are_not_one_per_shard_sample_are_refused_on_every_rank(tmp_path):
    results = run_ranks(lambda r: gather_in_dataset_order([r] * (1 if r == 0 else 3)), tmp_path)
    for status, message in results:  # rank 0 has fewer records than rank 1: not r::2 shards of 4 samples
        assert status == "error" and "ValueError" in message and "[1, 3] records" in message, message
