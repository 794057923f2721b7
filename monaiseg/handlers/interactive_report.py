"""Per-mode CSVs and the summary table of an interactive (click-simulation) evaluation."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from monai.engines import Workflow
from monai.utils import CommonKeys

from monaiseg.networks.trainable import parameter_report
from monaiseg.utils.batch import unwrap_model
from monaiseg.utils.distributed import concatenated_to_dataset_order, gather_in_dataset_order, is_rank0
from monaiseg.utils.files import atomic_outputs

logger = logging.getLogger(__name__)


class InteractiveReportWriter:
    """When the evaluator finishes: `<output_dir>/<mode>.csv` (image, class, dice, iou; one row
    per image and class present) and `summary.json` ({"table": {mode: {dice, iou}}, "per_class":
    {mode: {class: {dice, iou}}}, "num_images", "parameters"}), from the per-case details of the
    metrics `metric_names` {column: evaluator metric name} (save_details), laid out as
    `InteractiveInferer`'s channels. Under torch.distributed the image names are merged in dataset order,
    the details (which MONAI gathered rank after rank) put in the same order, and rank 0 alone writes."""

    def __init__(
        self,
        output_dir: str,
        modes: Sequence[str],
        class_names: Mapping,
        metric_names: Mapping[str, str],
        network: torch.nn.Module | None = None,
    ):
        self.output_dir, self.modes = Path(output_dir), list(modes)
        self.class_names = [str(v) for v in class_names.values()]
        self.metric_names = dict(metric_names)
        self.network = network
        self.images: list[str] = []

    def attach(self, engine: Workflow) -> None:
        engine.add_event_handler(Events.STARTED, lambda e: self.images.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def collect(self, engine: Workflow) -> None:
        for item in engine.state.output:
            self.images.append(Path(str(item[CommonKeys.IMAGE].meta.get("filename_or_obj", "?"))).name)

    def write(self, engine: Workflow) -> None:
        images = gather_in_dataset_order(self.images)
        if not is_rank0():
            return
        num_classes = len(self.class_names)
        details = {
            column: concatenated_to_dataset_order(
                torch.as_tensor(engine.state.metric_details[name]).float().cpu()
            ).reshape(-1, len(self.modes), num_classes)
            for column, name in self.metric_names.items()
        }
        table, per_class = {}, {}
        for m, mode in enumerate(self.modes):
            rows = []
            for i, image in enumerate(images):
                for c, cls in enumerate(self.class_names):
                    values = {column: float(d[i, m, c]) for column, d in details.items()}
                    if not any(np.isnan(v) for v in values.values()):
                        rows.append({"image": image, "class": cls, **values})
            with atomic_outputs(self.output_dir / f"{mode}.csv") as (tmp,), open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=["image", "class", *details])
                writer.writeheader()
                writer.writerows(rows)
            table[mode] = {column: float(d[:, m].nanmean()) for column, d in details.items()}
            per_class[mode] = {
                cls: {column: float(d[:, m, c].nanmean()) for column, d in details.items()}
                for c, cls in enumerate(self.class_names)
            }
        summary = {"table": table, "per_class": per_class, "num_images": len(images)}
        if self.network is not None:
            summary["parameters"] = parameter_report(unwrap_model(self.network))
        with atomic_outputs(self.output_dir / "summary.json") as (tmp,):
            tmp.write_text(json.dumps(summary, indent=2))
        logger.info("interactive evaluation (%d images) written to %s: %s", len(images), self.output_dir, table)
