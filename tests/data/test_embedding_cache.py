"""EmbeddingCache: hits/misses, keys, stale / corrupted entries, read-only dir, two processes."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from monaiseg.data.embedding_cache import EmbeddingCache, encoder_identity
from monaiseg.handlers.embedding_cache_logger import EmbeddingCacheLogger

PREPROCESS = {"image_size": 16, "mean": [0.5, 0.5, 0.5]}


class CountingEncoder(nn.Module):
    """(B, 3, 16, 16) -> (B, 4, 4, 4), records the batch size of every call."""

    def __init__(self, seed: int = 0, as_dict: bool = False):
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 4, 4, stride=4)
        self.drop = nn.Dropout(0.5)
        self.as_dict, self.calls = as_dict, []

    def forward(self, x):
        self.calls.append(x.shape[0])
        y = self.drop(self.conv(x))
        return {"features": y, "levels": [x[:, :1, ::2, ::2], y.mean(dim=(2, 3))]} if self.as_dict else y


def images(n: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_encode_computes_only_misses_in_one_call(tmp_path):
    encoder = CountingEncoder().train()
    cache = EmbeddingCache(tmp_path / "cache", encoder, PREPROCESS)
    x = images(4)
    first = cache.encode(x[:2])
    assert encoder.calls == [2] and not encoder.training  # eval mode: dropout off
    torch.testing.assert_close(first, encoder.conv(x[:2]).detach())
    assert not first.requires_grad
    both = cache.encode(torch.cat([x[:2], x[2:3], x[2:3]]))  # 2 hits, 1 new image given twice
    assert encoder.calls == [2, 1]
    torch.testing.assert_close(both, encoder.conv(torch.cat([x[:2], x[2:3], x[2:3]])).detach())
    assert (cache.hits, cache.misses) == (2, 3)
    assert len(cache) == 3
    entry_bytes = 4 * 4 * 4 * 4
    assert 3 * entry_bytes < cache.size_bytes() < 3 * (entry_bytes + 4096)
    assert not list(tmp_path.glob("cache/??/.tmp-*"))
    loaded = torch.load(next(tmp_path.glob("cache/??/*.pt")), weights_only=True)
    assert loaded["output"].shape == (4, 4, 4) and loaded["identity"] == cache.identity
    with pytest.raises(ValueError, match=r"encoder inputs \(B >= 1, C, H, W\), got \(3, 16, 16\)"):
        cache.encode(x[0])


def test_dict_outputs_round_trip(tmp_path):
    encoder = CountingEncoder(as_dict=True)
    cache = EmbeddingCache(tmp_path, encoder, PREPROCESS)
    x = images(3)
    cold = cache.encode(x)
    fresh = EmbeddingCache(tmp_path, encoder, PREPROCESS)  # a new process would see the same files
    warm = fresh.encode(x)
    assert encoder.calls == [3] and fresh.hits == 3
    assert set(warm) == {"features", "levels"} and isinstance(warm["levels"], list)
    assert warm["levels"][0].shape == (3, 1, 8, 8) and warm["levels"][1].shape == (3, 4)
    for a, b in zip([cold["features"], *cold["levels"]], [warm["features"], *warm["levels"]]):
        torch.testing.assert_close(a, b)


def test_keys_depend_on_weights_preprocess_and_content(tmp_path):
    x = images(1)[0]
    base = EmbeddingCache(tmp_path, CountingEncoder(seed=0), PREPROCESS)
    same = EmbeddingCache(tmp_path, CountingEncoder(seed=0), dict(reversed(PREPROCESS.items())))
    other_weights = EmbeddingCache(tmp_path, CountingEncoder(seed=1), PREPROCESS)
    other_prep = EmbeddingCache(tmp_path, CountingEncoder(seed=0), {**PREPROCESS, "image_size": 32})
    assert same.identity == base.identity and same.key(x) == base.key(x)
    assert other_weights.identity != base.identity
    assert len({base.key(x), other_weights.key(x), other_prep.key(x), base.key(x + 1e-6)}) == 4
    assert base.key(x) != base.key(x.double())  # same values, other encoder input dtype
    encoder = CountingEncoder(seed=0)
    before = encoder_identity(encoder)
    with torch.no_grad():
        encoder.conv.bias[0] += 1
    assert encoder_identity(encoder) != before


def test_stale_entry_is_ignored_and_rewritten(tmp_path):
    x = images(1)
    old = EmbeddingCache(tmp_path, CountingEncoder(seed=1), PREPROCESS)
    old.encode(x)
    new_encoder = CountingEncoder(seed=0)
    new = EmbeddingCache(tmp_path, new_encoder, PREPROCESS)
    # an entry at the new key holding another encoder's output (e.g. copied from elsewhere)
    path = new.path(new.key(x[0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(old.path(old.key(x[0])).read_bytes())
    with pytest.warns(RuntimeWarning, match=rf"{path}.*another image, encoder or preprocessing"):
        out = new.encode(x)
    torch.testing.assert_close(out, new_encoder.conv(x).detach())
    assert new_encoder.calls == [1]
    assert torch.load(path, weights_only=True)["identity"] == new.identity  # rewritten


@pytest.mark.parametrize("damage", ["truncate", "tamper", "garbage"])
def test_damaged_entry_is_recomputed_with_a_warning(tmp_path, damage):
    encoder = CountingEncoder()
    cache = EmbeddingCache(tmp_path, encoder, PREPROCESS)
    x = images(2)
    cache.encode(x)
    path = cache.path(cache.key(x[1]))
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        expected = "cannot be read"
    elif damage == "tamper":  # loads fine, metadata right, features wrong
        entry = torch.load(path, weights_only=True)
        entry["output"] = entry["output"] + 1
        torch.save(entry, path)
        expected = "wrong checksum"
    else:
        path.write_bytes(b"not a torch file")
        expected = "cannot be read"
    with pytest.warns(RuntimeWarning, match=rf"{path}.*{expected}"):
        out = cache.encode(x)
    torch.testing.assert_close(out, encoder.conv(x).detach())
    assert encoder.calls == [2, 1]
    cache.encode(x)  # rewritten: no warning, no encoder call
    assert encoder.calls == [2, 1]


def _make_read_only(path: Path) -> bool:
    """chmod 555; as root (chmod does not stop root) also the immutable attribute when allowed."""
    path.chmod(0o555)
    probe = path / "probe"
    try:
        probe.touch()
    except OSError:
        return True
    probe.unlink()
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def test_read_only_directory_gives_one_clear_error(tmp_path):
    root = tmp_path / "ro"
    root.mkdir()
    if not _make_read_only(root):
        pytest.skip("cannot make a read-only directory here (root without chattr)")
    try:
        with pytest.raises(PermissionError, match=rf"embedding cache directory {root} cannot be written"):
            EmbeddingCache(root, CountingEncoder(), PREPROCESS)
        with pytest.raises(PermissionError, match=rf"{root / 'sub'} cannot be written"):
            EmbeddingCache(root / "sub", CountingEncoder(), PREPROCESS)
    finally:
        subprocess.run(["chattr", "-i", str(root)], capture_output=True)
        root.chmod(0o755)


def test_logger_reports_size_per_epoch(tmp_path, caplog):
    from ignite.engine import Engine

    cache = EmbeddingCache(tmp_path, CountingEncoder(), PREPROCESS)
    x = images(3)
    engine = Engine(lambda e, batch: cache.encode(batch))
    EmbeddingCacheLogger(cache).attach(engine)
    with caplog.at_level(logging.INFO, logger="monaiseg.handlers.embedding_cache_logger"):
        engine.run([x[:2], x[1:]], max_epochs=2)
    lines = [r.getMessage() for r in caplog.records if "embedding cache" in r.getMessage()]
    assert len(lines) == 2
    assert "3 entries" in lines[0] and "1 hits, 3 misses" in lines[0]
    assert "4 hits, 0 misses" in lines[1]
    assert engine.state.embedding_cache["entries"] == 3
    assert engine.state.embedding_cache["size_bytes"] == cache.size_bytes() > 0


WORKER = textwrap.dedent("""
    import importlib.util, sys, time, torch
    from pathlib import Path
    root, module_file, rank = sys.argv[1], sys.argv[2], int(sys.argv[3])
    spec = importlib.util.spec_from_file_location("embedding_cache", module_file)  # no package imports: fast
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    encoder = torch.nn.Conv2d(3, 4, 4, stride=4)
    cache = module.EmbeddingCache(root, encoder, {"image_size": 16})
    x = torch.rand(12, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    Path(root, f"ready{rank}").touch()
    while not Path(root, f"ready{1 - rank}").exists():  # start together
        time.sleep(0.002)
    for i in (range(12) if rank == 0 else reversed(range(12))):
        cache.encode(x[[i, (i + 5) % 12]])
""")


@pytest.mark.slow
def test_two_processes_fill_one_cache(tmp_path):
    """Both processes write every key (in opposite orders) through temp files + rename; afterwards
    every entry is whole and correct and no temporary file is left."""
    import monaiseg.data.embedding_cache as module

    root = tmp_path / "shared_cache"
    procs = [
        subprocess.Popen(
            [sys.executable, "-W", "error::RuntimeWarning", "-c", WORKER, str(root), module.__file__, str(rank)],
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in (0, 1)
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    torch.manual_seed(0)
    encoder = nn.Conv2d(3, 4, 4, stride=4)
    cache = EmbeddingCache(root, encoder, {"image_size": 16})
    assert len(cache) == 12 and not list(root.glob("??/.tmp-*"))
    x = images(12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no entry is damaged or stale
        out = cache.encode(x)
    torch.testing.assert_close(out, encoder(x).detach())
    assert (cache.hits, cache.misses) == (12, 0)
