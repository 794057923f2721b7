"""Ignite handlers that MONAI lacks."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from ignite.engine import Engine, Events

from monaiseg.data.datalist import atomic_outputs

logger = logging.getLogger(__name__)


def save_model_atomic(network: torch.nn.Module, path: str | Path,
                      state_dict_fn: Callable[[torch.nn.Module], dict] | None = None) -> Path:
    """Write `{'model': state_dict}` (plain tensors) to `path` via a temporary file and rename.
    `state_dict_fn(model)` selects what is saved (e.g. `peft_state_dict`: adapter-only weights)."""
    model = network.module if hasattr(network, "module") else network
    state = model.state_dict() if state_dict_fn is None else state_dict_fn(model)
    with atomic_outputs(path) as (tmp,):
        torch.save({"model": {k: v.detach().cpu() for k, v in state.items()}}, tmp)
    return Path(path)


class BestModelSaver:
    """Save the network as `{'model': state_dict}` (the official SAM2 layout for SAM2 models)
    each time the evaluator's `metric_name` improves (`state_dict_fn`: see `save_model_atomic`)."""

    def __init__(self, network: torch.nn.Module, filename: str, metric_name: str,
                 state_dict_fn: Callable[[torch.nn.Module], dict] | None = None):
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


class MetricsSummaryWriter:
    """Write `{metric: mean, per_label: {name: {metric: mean}}, num_cases}` as JSON when the
    evaluator finishes, from the per-case details of `metric_names` (saved with save_details)."""

    def __init__(self, filename: str, label_names: list[str] | dict, metric_names: list[str]):
        self.filename, self.metric_names = filename, list(metric_names)
        self.label_names = list(label_names.values()) if isinstance(label_names, dict) else list(label_names)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        summary: dict = {"num_cases": 0, "per_label": {name: {} for name in self.label_names}}
        for metric in self.metric_names:
            summary[metric] = float(engine.state.metrics[metric])
            details = torch.as_tensor(engine.state.metric_details[metric]).float()  # (cases, labels)
            summary["num_cases"] = int(details.shape[0])
            for c, name in enumerate(self.label_names):
                summary["per_label"][name][metric] = float(details[:, c].nanmean())
        with atomic_outputs(self.filename) as (tmp,):
            tmp.write_text(json.dumps(summary, indent=2))
        logger.info("metrics summary written to %s", self.filename)
