"""Bounded in-memory LRU of tensors: image embeddings reused between interactive requests.

`MemoryLRU(max_bytes)` maps hashable keys to values (a tensor, or dicts / lists / tuples of
tensors: `tensor_leaves`), least recently used first out once the stored tensors' bytes
(`Tensor.nbytes`, views counted at their size) exceed `max_bytes`; a value larger than the
bound is returned but not kept. Keys are `(identity, content_key)` pairs in practice (see
`EmbeddingReuse`), so `discard(identity)` drops every entry of one weights version at once.

Values are stored as given (detached) and handed out shared, never copied: callers must treat
them as read-only (SAM's decoders only read the image embedding). Thread-safe: one lock guards
the table; `get_or_compute` computes a missing value once even when several threads ask for
the same key at the same time (the others wait for it), so concurrent requests see one value.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from monaiseg.data.embedding_cache import Output, tensor_leaves


def output_bytes(value: Output) -> int:
    """Bytes held by the tensors of `value`."""
    return sum(t.nbytes for t in tensor_leaves(value))


def _detach(value: Output) -> Output:
    if isinstance(value, dict):
        return {k: _detach(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_detach(v) for v in value)
    return value.detach()


class MemoryLRU:
    """Least-recently-used cache of tensor values bounded by `max_bytes` (see the module docstring)."""

    def __init__(self, max_bytes: int):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._entries: OrderedDict[Hashable, tuple[Output, int]] = OrderedDict()
        self._pending: dict[Hashable, threading.Event] = {}
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = self.misses = self.evictions = 0

    def get(self, key: Hashable) -> Output | None:
        """The value of `key` (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: Hashable, value: Output) -> Output:
        """Store `value` (detached) under `key`, evicting the least recently used entries to stay
        within the bound; returns the stored value. A value over the bound is not kept."""
        value = _detach(value)
        size = output_bytes(value)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            if size > self.max_bytes:
                return value
            self._entries[key] = (value, size)
            self.bytes += size
            while self.bytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped
                self.evictions += 1
        return value

    def get_or_compute(self, key: Hashable, compute: Callable[[], Output]) -> tuple[Output, bool]:
        """(value, hit): the stored value of `key`, else `compute()` stored. Concurrent callers of
        one missing key wait for the first one's result instead of computing it again."""
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return entry[0], True
                pending = self._pending.get(key)
                if pending is None:
                    self._pending[key] = threading.Event()
                    self.misses += 1
                    break
            pending.wait()  # then a hit, or (value over the bound, not kept) this thread computes it
        try:
            return self.put(key, compute()), False
        finally:
            with self._lock:
                self._pending.pop(key).set()

    def discard(self, identity: Hashable) -> int:
        """Drop every entry whose key is a tuple starting with `identity`; returns how many."""
        with self._lock:
            keys = [k for k in self._entries if isinstance(k, tuple) and k and k[0] == identity]
            for key in keys:
                self.bytes -= self._entries.pop(key)[1]
        return len(keys)

    def __len__(self) -> int:
        return len(self._entries)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return {
                "entries": len(self._entries),
                "bytes": self.bytes,
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
            }
