"""The networks interactive tasks serve, with image embeddings reused between requests.

`ReusedNetworks(cache).network(runtime)` is the bundle's network (`BundleRuntime.network()`, shared
and read-only) wrapped in an `EmbeddingReuse` over the app's one `MemoryLRU` (bounded by
`monaiseg label serve --cache-mib`), for prompted models (those with `predict_masks`: SAM, MedSAM,
SAM-Med2D, LiteMedSAM, SAM2); other networks, or no cache, are served as they are. The weights
version in the key is the bundle's name, its `model.pt` version and the loaded network: when
training replaces `model.pt`, the next request loads the new network, gets a new identity and
frees the old version's entries. The wrapper (`TimedReuse`) also times the model's prompt encoder
and mask decoder per request thread, which the task reports as the request's decoder seconds.
"""

from __future__ import annotations

import threading
import time
from functools import partial
from types import MethodType
from typing import Any, cast

import torch

from monaiseg.data.memory_cache import MemoryLRU
from monaiseg.inferers.embedding_reuse import EmbeddingReuse
from monaiseg.label.runtime import BundleRuntime
from monaiseg.networks.sam2_segmenter import SAM2Segmenter
from monaiseg.networks.sam_segmenter import SAMSegmenter


class TimedReuse(EmbeddingReuse):
    """`EmbeddingReuse` whose model's `encode_prompts` and `decode` (SAM v1 family) run bound to this
    wrapper (so `decode` reads the dense positional encoding computed once) and are timed, per
    thread: `decoder_seconds` since `reset_clock()`."""

    def __init__(self, model: SAMSegmenter | SAM2Segmenter, cache: MemoryLRU, identity: str):
        super().__init__(model, cache, identity)
        self._clock = threading.local()
        for name in ("encode_prompts", "decode"):
            if hasattr(type(model), name):
                setattr(self, name, partial(self._timed, name))

    def _timed(self, name: str, *args, **kwargs) -> Any:
        start = time.perf_counter()
        try:
            return MethodType(getattr(type(self.model), name), self)(*args, **kwargs)
        finally:
            self._clock.seconds = self.decoder_seconds + time.perf_counter() - start

    def reset_clock(self) -> None:
        self._clock.seconds = 0.0

    @property
    def decoder_seconds(self) -> float:
        return getattr(self._clock, "seconds", 0.0)


class ReusedNetworks:
    """Per bundle, its network wrapped for embedding reuse over `cache` (None: no reuse)."""

    def __init__(self, cache: MemoryLRU | None):
        self.cache = cache
        self._wrapped: dict[str, TimedReuse] = {}
        self._lock = threading.Lock()

    def network(self, runtime: BundleRuntime) -> torch.nn.Module | TimedReuse:
        network = runtime.network()
        if self.cache is None or not hasattr(network, "predict_masks"):
            return network
        name = runtime.info.name
        with self._lock:
            current = self._wrapped.get(name)
            if current is None or current.model is not network:
                if current is not None:
                    self.cache.discard(current.identity)
                identity = f"{name}:{runtime.weights_version}:{id(network)}"
                model = cast(SAMSegmenter | SAM2Segmenter, network)  # a prompted model: it has predict_masks
                current = self._wrapped[name] = TimedReuse(model, self.cache, identity)
            return current
