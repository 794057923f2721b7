"""Classification evaluation as files: metrics summary, per-class table, confusion matrix, predictions."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.engines import Workflow

from monaiseg.handlers.collector import OutputCollector
from monaiseg.metrics.classification import write_classification_report, write_predictions
from monaiseg.networks.trainable import parameter_report
from monaiseg.utils.batch import unwrap_model
from monaiseg.utils.distributed import gather_in_dataset_order, is_rank0, sum_over_ranks

logger = logging.getLogger(__name__)


class ClassificationReportWriter(OutputCollector):
    """Ignite handler: collect each image's logits `pred` (K,) (softmax applied here), its `label`
    and file name; when the evaluator completes write the report (`write_classification_report`,
    with the number of images, images per second of the evaluator's iterations and the network's
    parameter counts) or, with `with_labels=False`, the predictions only (`write_predictions`). Under
    torch.distributed the ranks' images are merged in dataset order at the end and rank 0 alone writes."""

    def __init__(
        self,
        output_dir: str,
        class_names: Sequence[str],
        network: torch.nn.Module | None = None,
        with_labels: bool = True,
    ):
        self.output_dir, self.class_names = Path(output_dir), list(class_names)
        self.network, self.with_labels = network, with_labels
        self.names: list[str] = []
        self.probs: list[np.ndarray] = []
        self.labels: list[int] = []
        self.seconds = 0.0

    def reset(self, engine: Workflow) -> None:
        self.names, self.probs, self.labels, self.seconds = [], [], [], 0.0

    def collect(self, engine: Workflow) -> None:
        self.seconds += time.perf_counter() - self._start  # network and post-processing, not data loading
        for out in engine.state.output:
            logits = torch.as_tensor(out["pred"]).detach().float().flatten()
            if logits.numel() != len(self.class_names):
                raise ValueError(
                    f"the network gives {logits.numel()} scores per image for {len(self.class_names)} "
                    f"class names {self.class_names}"
                )
            self.probs.append(torch.softmax(logits, 0).cpu().numpy())
            meta = getattr(out.get("image"), "meta", {})
            self.names.append(str(meta.get("filename_or_obj", f"image_{len(self.names)}")))
            if self.with_labels:
                self.labels.append(int(torch.as_tensor(out["label"]).flatten()[0]))

    def write(self, engine: Workflow) -> None:
        labels: list[int | None] = [*self.labels] if self.with_labels else [None] * len(self.names)
        images = gather_in_dataset_order(list(zip(self.names, self.probs, labels)))
        seconds = sum_over_ranks(self.seconds)
        if not is_rank0():
            return
        if not images:
            raise ValueError("no image was evaluated: the data list is empty")
        names, probs = [n for n, _, _ in images], np.stack([p for _, p, _ in images])
        if not self.with_labels:
            write_predictions(self.output_dir, names, probs, self.class_names)
            return
        extra: dict[str, object] = {"images_per_second": len(names) / seconds if seconds else 0.0}
        if self.network is not None:
            extra["parameters"] = parameter_report(unwrap_model(self.network))
        targets = [y for _, _, y in images if y is not None]  # with labels: one per image
        write_classification_report(self.output_dir, targets, probs, self.class_names, names, extra)
