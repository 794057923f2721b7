"""MemoryLRU: the byte bound, least-recently-used eviction, shared values, one computation per key
under concurrency, and discarding one weights version."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch

from monaiseg.data.memory_cache import MemoryLRU, output_bytes


def value(n: int, fill: float = 0.0) -> torch.Tensor:
    return torch.full((n,), fill, dtype=torch.float32)  # 4 n bytes


def test_bound_evicts_least_recently_used_first():
    cache = MemoryLRU(max_bytes=400)  # room for two 40-float values
    cache.put(("w", "a"), value(40, 1))
    cache.put(("w", "b"), value(40, 2))
    assert cache.get(("w", "a"))[0] == 1  # a is now the most recent
    cache.put(("w", "c"), value(40, 3))
    assert cache.get(("w", "b")) is None and cache.get(("w", "a")) is not None and cache.get(("w", "c")) is not None
    summary = cache.summary()
    assert summary["bytes"] == 320 <= summary["max_bytes"] and summary["entries"] == 2 and summary["evictions"] == 1


def test_value_over_the_bound_is_returned_not_kept():
    cache = MemoryLRU(max_bytes=100)
    big = value(100)
    assert cache.put(("w", "big"), big).data_ptr() == big.data_ptr()
    assert len(cache) == 0 and cache.bytes == 0


def test_values_are_shared_not_copied_and_nested_outputs_count_all_tensors():
    cache = MemoryLRU(max_bytes=10_000)
    nested = (value(10), [value(5), value(5)])
    stored = cache.put(("w", "x"), nested)
    again = cache.get(("w", "x"))
    assert again[0].data_ptr() == stored[0].data_ptr() and again[1][1].data_ptr() == stored[1][1].data_ptr()
    assert output_bytes(nested) == 80 == cache.bytes


def test_get_or_compute_runs_compute_once_for_concurrent_callers():
    cache = MemoryLRU(max_bytes=10_000)
    calls = []
    gate = threading.Event()

    def compute():
        calls.append(1)
        gate.wait(5)
        return value(10, 7)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(cache.get_or_compute, ("w", "k"), compute) for _ in range(4)]
        time.sleep(0.2)
        gate.set()
        results = [f.result() for f in futures]
    assert len(calls) == 1
    assert sorted(hit for _, hit in results) == [False, True, True, True]
    assert len({r[0].data_ptr() for r in results}) == 1
    assert cache.summary()["misses"] == 1 and cache.summary()["hits"] == 3


def test_discard_drops_one_identity_only():
    cache = MemoryLRU(max_bytes=10_000)
    cache.put(("old", "a"), value(10))
    cache.put(("old", "b"), value(10))
    cache.put(("new", "a"), value(10))
    assert cache.discard("old") == 2
    assert len(cache) == 1 and cache.bytes == 40 and cache.get(("new", "a")) is not None


def test_negative_bound_is_refused():
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryLRU(-1)
