"""Ignite handlers that MONAI lacks."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch
from ignite.engine import Engine, Events

logger = logging.getLogger(__name__)


def save_model_atomic(network: torch.nn.Module, path: str | Path) -> Path:
    """Write `{'model': state_dict}` (plain tensors) to `path` via a temporary file and rename."""
    model = network.module if hasattr(network, "module") else network
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


class BestModelSaver:
    """Save the network as `{'model': state_dict}` (the official SAM2 layout for SAM2 models)
    each time the evaluator's `metric_name` improves."""

    def __init__(self, network: torch.nn.Module, filename: str, metric_name: str):
        self.network, self.filename, self.metric_name = network, filename, metric_name
        self.best: float | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._on_validation)

    def _on_validation(self, engine: Engine) -> None:
        score = float(engine.state.metrics[self.metric_name])
        if self.best is None or score > self.best:
            self.best = score
            save_model_atomic(self.network, self.filename)
            logger.info("saved %s (%s = %.4f)", self.filename, self.metric_name, score)
