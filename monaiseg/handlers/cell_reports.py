"""Evaluation reports of the cell bundles: the paper's Tables 1 and 2 (segmentation) and the
tracking table, written per run as JSON + CSV."""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Events
from monai.engines import Workflow

from monaiseg.data.ctc import write_ctc_result
from monaiseg.metrics.cells import cell_type_scores, write_cell_type_scores
from monaiseg.metrics.tracking import tracking_accuracy
from monaiseg.networks.trainable import parameter_report
from monaiseg.utils.batch import unwrap_model
from monaiseg.utils.distributed import gather_in_dataset_order, is_rank0, sum_over_ranks
from monaiseg.utils.files import write_csv_atomic, write_json_atomic

UNKNOWN_TYPE = "unknown"

logger = logging.getLogger(__name__)


class _Timing:
    """Seconds spent per iteration of an engine (data loading excluded)."""

    def __init__(self):
        self.seconds, self.items, self._start = 0.0, 0, 0.0

    def attach(self, engine: Workflow) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_STARTED, self.start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.stop)

    def reset(self, engine: Workflow) -> None:
        self.seconds, self.items = 0.0, 0

    def start(self, engine: Workflow) -> None:
        self._start = time.perf_counter()

    def stop(self, engine: Workflow) -> None:
        self.seconds += time.perf_counter() - self._start
        self.items += len(engine.state.output) if isinstance(engine.state.output, list) else 1

    def merged(self) -> tuple[int, float]:
        """(items, seconds) summed over ranks (a collective call): items / seconds stays one process's speed."""
        return int(sum_over_ranks(self.items)), sum_over_ranks(self.seconds)


class CellReportWriter:
    """When the evaluator finishes, write `summary.json` (mean metrics, per-cell-type pixel
    precision / recall / F1, segmentation fps and parameter counts) and `cell_types.csv`.

    Outputs are de-collated one-hot foreground maps `pred`, `label` (2, H, W); the cell type of
    each image comes from the datalist item's `cell_type` (items without one count as "unknown").
    fps = images / seconds of the evaluator's iterations (network, prompts and post-processing).
    Under torch.distributed the ranks' records and times are merged at the end and rank 0 alone writes.
    """

    def __init__(
        self,
        output_dir: str,
        metric_names: Sequence[str],
        cell_types: Mapping[str, str],
        network: torch.nn.Module | None = None,
    ):
        self.output_dir, self.metric_names = Path(output_dir), list(metric_names)
        self.cell_types = {int(k): v for k, v in cell_types.items()}
        self.network = network
        self.timing = _Timing()
        self.records: list[tuple[str, int, int, int]] = []

    def attach(self, engine: Workflow) -> None:
        self.timing.attach(engine)
        engine.add_event_handler(Events.STARTED, lambda e: self.records.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def collect(self, engine: Workflow) -> None:
        for item, out in zip(engine.state.batch, engine.state.output):
            pred, label = torch.as_tensor(out["pred"])[1] > 0, torch.as_tensor(out["label"])[1] > 0
            name = self.cell_types.get(int(item.get("cell_type", 0)), UNKNOWN_TYPE)
            self.records.append(
                (name, int((pred & label).sum()), int((pred & ~label).sum()), int((~pred & label).sum()))
            )

    def write(self, engine: Workflow) -> None:
        records = gather_in_dataset_order(self.records)
        items, seconds = self.timing.merged()
        if not is_rank0():
            return
        seen = {name for name, *_ in records}
        names = [n for n in [*self.cell_types.values(), UNKNOWN_TYPE] if n in seen]
        scores = cell_type_scores(records, names)
        summary: dict[str, object] = {m: float(engine.state.metrics[m]) for m in self.metric_names}
        summary["per_cell_type"] = scores
        summary["num_images"] = items
        summary["fps"] = items / seconds if seconds else 0.0
        if self.network is not None:
            model = unwrap_model(self.network)
            summary["parameters"] = parameter_report(model)
        write_cell_type_scores(self.output_dir / "cell_types.csv", scores)
        write_json_atomic(self.output_dir / "summary.json", summary)
        logger.info("cell report written to %s", self.output_dir)


class TrackingReportWriter:
    """Cell tracking evaluation: for each video the Cell Tracking Challenge TRA of the propagated
    instance ids against the ground-truth tracks, written as `tracking.csv` + `tracking.json`, and
    the prediction saved in the challenge's result layout (`<output_dir>/tracking/<video>_RES`).

    Outputs carry `pred_ids` and `label_ids` (1, S0, S1, T) (copied before post-processing turns
    them into one-hot foreground maps); ground-truth divisions are read from the `man_track.txt`
    of the item's label folder. Under torch.distributed each rank writes the result folders of its own
    videos; the rows are merged in dataset order at the end and rank 0 alone writes the tables.
    """

    def __init__(self, output_dir: str, network: torch.nn.Module | None = None):
        self.output_dir, self.network = Path(output_dir), network
        self.timing = _Timing()
        self.rows: list[dict] = []

    def attach(self, engine: Workflow) -> None:
        self.timing.attach(engine)
        engine.add_event_handler(Events.STARTED, lambda e: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def collect(self, engine: Workflow) -> None:
        for item, out in zip(engine.state.batch, engine.state.output):
            gt_dir = Path(str(item["label"].meta["filename_or_obj"])) if hasattr(item["label"], "meta") else None
            gt_dir = gt_dir if gt_dir is None or gt_dir.is_dir() else gt_dir.parent
            pred = _frames_first(out["pred_ids"])
            gt = _frames_first(out["label_ids"])
            tra = tracking_accuracy(pred, gt, gt_parents=_parents(gt_dir)) if gt.any() else float("nan")
            name = gt_dir.parent.name.removesuffix("_GT") if gt_dir is not None else f"video{len(self.rows)}"
            res_dir = self.output_dir / "tracking" / f"{name}_RES"
            if res_dir.exists():  # our own output of an earlier run
                shutil.rmtree(res_dir)
            write_ctc_result(res_dir, pred)
            self.rows.append(
                {"video": name, "frames": int(pred.shape[0]), "cells": int(len(np.unique(gt)) - 1), "tra": tra}
            )

    def write(self, engine: Workflow) -> None:
        rows = gather_in_dataset_order(self.rows)
        _, seconds = self.timing.merged()
        if not is_rank0():
            return
        summary = {
            "mean_tra": float(np.nanmean([r["tra"] for r in rows])) if rows else float("nan"),
            "num_videos": len(rows),
            "videos": rows,
            "frames_per_second": (sum(r["frames"] for r in rows) / seconds) if seconds else 0.0,
        }
        summary.update({m: float(v) for m, v in engine.state.metrics.items()})
        if self.network is not None:
            model = unwrap_model(self.network)
            summary["parameters"] = parameter_report(model)
        if rows:
            write_csv_atomic(self.output_dir / "tracking.csv", rows)
        write_json_atomic(self.output_dir / "tracking.json", summary)
        logger.info("tracking report written to %s (mean TRA %.4f)", self.output_dir, summary["mean_tra"])


def _frames_first(ids) -> np.ndarray:
    """(1, S0, S1, T) ids as loaded by `LoadCTCd` (x first) -> (T, H, W) frames as in the files."""
    return np.asarray(torch.as_tensor(ids).cpu())[0].transpose(2, 1, 0).astype(np.int32)


def _parents(gt_dir: Path | None) -> dict[int, int] | None:
    """child -> parent of the tracks in `gt_dir/man_track.txt` (None without one)."""
    if gt_dir is None or not (gt_dir / "man_track.txt").is_file():
        return None
    table = np.loadtxt(gt_dir / "man_track.txt", dtype=np.int64, ndmin=2)
    return {int(label): int(parent) for label, _, _, parent in table if parent > 0}
