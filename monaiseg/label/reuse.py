"""The networks interactive tasks serve, with image embeddings reused between requests.

`ReusedNetworks(cache).network(runtime)` is the bundle's network (`BundleRuntime.network()`, shared
and read-only) wrapped in an `EmbeddingReuse` over the app's one `MemoryLRU` (bounded by
`monaiseg label serve --cache-mib`), for prompted models (those with `predict_masks`: SAM, MedSAM,
SAM-Med2D, LiteMedSAM, SAM2); other networks, or no cache, are served as they are. The weights
version in the key is the bundle's name, its `model.pt` version and the loaded network: when
training replaces `model.pt`, the next request loads the new network, gets a new identity and
frees the old version's entries.
"""

from __future__ import annotations

import threading
from typing import cast

import torch

from monaiseg.data.memory_cache import MemoryLRU
from monaiseg.inferers.embedding_reuse import EmbeddingReuse
from monaiseg.label.runtime import BundleRuntime
from monaiseg.networks.sam2_segmenter import SAM2Segmenter
from monaiseg.networks.sam_segmenter import SAMSegmenter


class ReusedNetworks:
    """Per bundle, its network wrapped for embedding reuse over `cache` (None: no reuse)."""

    def __init__(self, cache: MemoryLRU | None):
        self.cache = cache
        self._wrapped: dict[str, EmbeddingReuse] = {}
        self._lock = threading.Lock()

    def network(self, runtime: BundleRuntime) -> torch.nn.Module | EmbeddingReuse:
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
                current = self._wrapped[name] = EmbeddingReuse(model, self.cache, identity)
            return current
