"""scripts/bench_embedding_cache.py: smoke run on a tiny encoder."""

from __future__ import annotations

import sys

import pytest
from conftest import REPO


@pytest.mark.slow
def test_benchmark_script_smoke(capsys):
    """The benchmark on a 1-block ViT at 64 px: the warm epoch reads every frame from the cache."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from bench_embedding_cache import main as bench
    finally:
        sys.path.pop(0)
    result = bench(["--variant", "vit_b", "--depth", "1", "--image-size", "64", "--num-images", "2", "--batch", "2"])
    printed = capsys.readouterr().out
    assert "speed-up no cache / warm cache:" in printed and "cache: 2 entries" in printed
    assert (result["entries"], result["misses"], result["hits"]) == (2, 2, 2)  # cold: 2 misses, warm: 2 hits
    assert set(result["seconds"]) == {"no cache", "cold cache", "warm cache"} and result["ratio"] > 0
