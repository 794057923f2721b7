"""Ignite handlers that MONAI lacks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from monaiseg.utils.batch import unwrap_model
from monaiseg.utils.files import atomic_outputs

logger = logging.getLogger(__name__)


def save_model_atomic(
    network: torch.nn.Module, path: str | Path, state_dict_fn: Callable[[torch.nn.Module], dict] | None = None
) -> Path:
    """Write `{'model': state_dict}` (plain tensors) to `path` via a temporary file and rename.
    `state_dict_fn(model)` selects what is saved (e.g. `peft_state_dict`: adapter-only weights)."""
    model = unwrap_model(network)
    state = model.state_dict() if state_dict_fn is None else state_dict_fn(model)
    with atomic_outputs(path) as (tmp,):
        torch.save({"model": {k: v.detach().cpu() for k, v in state.items()}}, tmp)
    return Path(path)


class BestModelSaver:
    """Save the network as `{'model': state_dict}` (the official SAM2 layout for SAM2 models)
    each time the evaluator's `metric_name` improves (`state_dict_fn`: see `save_model_atomic`)."""

    def __init__(
        self,
        network: torch.nn.Module,
        filename: str,
        metric_name: str,
        state_dict_fn: Callable[[torch.nn.Module], dict] | None = None,
    ):
        self.network, self.filename, self.metric_name = network, filename, metric_name
        self.state_dict_fn = state_dict_fn
        self.best: float | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._on_validation)

    def state_dict(self) -> dict:
        """The best score so far (for resumable checkpoints)."""
        return {"best": self.best}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]

    def _on_validation(self, engine: Engine) -> None:
        score = float(engine.state.metrics[self.metric_name])
        if self.best is None or score > self.best:
            self.best = score
            save_model_atomic(self.network, self.filename, self.state_dict_fn)
            logger.info("saved %s (%s = %.4f)", self.filename, self.metric_name, score)
