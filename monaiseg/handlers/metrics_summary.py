"""Writes the evaluator's final metrics as JSON."""

from __future__ import annotations

import json
import logging

import torch
from ignite.engine import Events
from monai.engines import Workflow

from monaiseg.utils.distributed import is_rank0
from monaiseg.utils.files import atomic_outputs

logger = logging.getLogger(__name__)


class MetricsSummaryWriter:
    """Write `{metric: mean, per_label: {name: {metric: mean}}, num_cases}` as JSON when the
    evaluator finishes, from the per-case details of `metric_names` (saved with save_details; MONAI gathers
    them over ranks), on rank 0 only."""

    def __init__(self, filename: str, label_names: list[str] | dict, metric_names: list[str]):
        self.filename, self.metric_names = filename, list(metric_names)
        self.label_names = list(label_names.values()) if isinstance(label_names, dict) else list(label_names)

    def attach(self, engine: Workflow) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Workflow) -> None:
        if not is_rank0():
            return
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
