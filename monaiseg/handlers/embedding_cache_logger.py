"""Logs the image-embedding cache's size and hit rate once per epoch."""

from __future__ import annotations

import logging

from monaiseg.data.embedding_cache import EmbeddingCache

logger = logging.getLogger(__name__)


class EmbeddingCacheLogger:
    """Ignite handler: at each EPOCH_COMPLETED, log the cache's entries, size and the epoch's hits /
    misses, store them in `engine.state.embedding_cache`, and reset the counters. `cache=None` (caching
    switched off in a config) attaches nothing."""

    def __init__(self, cache: EmbeddingCache | None):
        self.cache = cache

    def attach(self, engine) -> None:
        from ignite.engine import Events

        if self.cache is None:
            return
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine) -> None:
        assert self.cache is not None  # attach() registers nothing without a cache
        summary = self.cache.summary()
        engine.state.embedding_cache = summary
        logger.info(
            "embedding cache %s: %d entries, %.1f MB; this epoch %d hits, %d misses",
            summary["root"],
            summary["entries"],
            summary["size_bytes"] / 2**20,
            summary["hits"],
            summary["misses"],
        )
        self.cache.hits = self.cache.misses = 0
