"""EndoVis evaluation of class maps in an evaluator: Challenge IoU, IoU, mcIoU and per-class IoU
(`monaiseg.metrics.endovis`, upstream SurgicalSAM's definitions), per frame and over the run."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from ignite.engine import Events
from monai.engines import Workflow

from monaiseg.metrics.endovis import EndoVisIoU
from monaiseg.utils.distributed import gather_in_dataset_order, is_rank0
from monaiseg.utils.files import write_csv_atomic, write_json_atomic

logger = logging.getLogger(__name__)

SUMMARY_KEYS = ("challenge_iou", "iou", "mciou")


class EndoVisReportWriter:
    """Evaluator handler: each frame's predicted and ground-truth class maps (outputs `pred`,
    `label` (1, H, W)) go into an `EndoVisIoU` accumulator. At the end of the epoch
    `engine.state.metrics` gets `challenge_iou`, `iou`, `mciou` and `iou_<class name>` (fractions;
    classes never scored are left out), so `BestModelSaver`, `StatsHandler` and MLflow see them.
    With `output_dir`, `per_frame.csv` (per frame: file, Challenge IoU, IoU, per-class IoU; empty
    where the frame does not count) and `summary.json` (NaN as null) are written atomically. Under
    torch.distributed the ranks' frames are merged in dataset order first (every rank gets the metrics)
    and rank 0 alone writes.
    """

    def __init__(self, class_names: Sequence[str], output_dir: str | None = None):
        self.class_names = list(class_names)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.metric = EndoVisIoU(len(self.class_names))

    def attach(self, engine: Workflow) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, lambda e: self.metric.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)

    def collect(self, engine: Workflow) -> None:
        for item, out in zip(engine.state.batch, engine.state.output):
            self.metric.update(out["pred"], out["label"], name=_source(item, len(self.metric.frames)))

    def write(self, engine: Workflow) -> None:
        self.metric.frames = gather_in_dataset_order(self.metric.frames)
        results = self.metric.aggregate()
        per_class = dict(zip(self.class_names, results["per_class_iou"]))
        scalars = {**{k: results[k] for k in SUMMARY_KEYS}, **{f"iou_{n}": v for n, v in per_class.items()}}
        engine.state.metrics.update({k: float(v) for k, v in scalars.items() if not math.isnan(v)})
        if self.output_dir is None or not is_rank0():
            return
        summary = {
            **{k: results[k] for k in (*SUMMARY_KEYS, "cumulative_iou", "num_frames")},
            "per_class_iou": per_class,
        }
        write_json_atomic(self.output_dir / "summary.json", _nan_to_none(summary))
        rows = [
            {
                "frame": name,
                "challenge_iou": _blank(s.challenge_iou),
                "iou": _blank(s.iou),
                **{f"iou_{n}": _blank(s.class_ious.get(c)) for c, n in enumerate(self.class_names, start=1)},
            }
            for name, s in self.metric.frames
        ]
        if rows:
            write_csv_atomic(self.output_dir / "per_frame.csv", rows)
        logger.info(
            "EndoVis report written to %s: %s", self.output_dir, {k: round(float(results[k]), 4) for k in SUMMARY_KEYS}
        )


def _blank(value: float | None) -> float | str:
    return "" if value is None else value


def _nan_to_none(value):
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


def _source(item, index: int) -> str:
    meta = getattr(item.get("image"), "meta", {}) if isinstance(item, dict) else {}
    return str(meta.get("filename_or_obj", f"frame_{index}"))
