"""Batch inference that survives a bad case: log it in one line, record it in `<output_dir>/failures.csv`, run
the other cases, end with a summary of counts and a non-zero exit when any case failed.

`CaseFailures` is both the evaluator's `iteration_update` (it runs MONAI's iteration and catches a case's
error: stage "inference" up to the network's output, "save" in postprocessing) and a handler (`attach`) that
collects the cases `monaiseg.data.CaseDataset` could not read (stage "load"). Under torchrun the ranks' records
are gathered and rank 0 writes the file. `fail_fast`: every error propagates (no record, no summary).
Bundle JSON::

    "case_failures": {"_target_": "monaiseg.handlers.CaseFailures", "output_dir": "@output_dir",
                      "fail_fast": "@fail_fast"},
    "evaluator": {..., "iteration_update": "@case_failures", "val_handlers": [..., "@case_failures"]},
    "finalize": ["$@case_failures.exit_on_failure()"]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.distributed as dist
from ignite.engine import Engine, Events
from monai.engines import Workflow
from monai.engines.utils import IterationEvents

from monaiseg.data.case_guard import FAILED_CASES, failure_reason
from monaiseg.utils.batch import image_names
from monaiseg.utils.config import as_bool
from monaiseg.utils.distributed import is_rank0, world_size
from monaiseg.utils.files import write_csv_atomic

logger = logging.getLogger(__name__)

FAILURES_FILE = "failures.csv"


class CaseFailures:
    """Per-case error handling of an evaluator (see the module). `output_dir`: where `failures.csv` goes;
    `image_key`: the batch key whose metadata names the cases."""

    def __init__(self, output_dir: str | Path, fail_fast: bool | str = False, image_key: str = "image"):
        self.path = Path(output_dir) / FAILURES_FILE
        self.fail_fast, self.image_key = as_bool(fail_fast, "fail_fast"), image_key
        self.records: list[dict] = []  # this rank's, then (after COMPLETED) every rank's
        self.cases = 0
        self.total = 0
        self._stage = "inference"

    def attach(self, engine: Workflow) -> None:
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self._forward_completed)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _started(self, engine: Engine) -> None:
        self.records, self.cases, self.total = [], 0, 0
        if is_rank0() and self.path.is_file():
            self.path.unlink()  # a previous run's list

    def _forward_completed(self, engine: Engine) -> None:
        self._stage = "save"

    def record(self, case: str, stage: str, reason: str) -> None:
        """Add one failed case and log it in one line."""
        self.records.append({"case": case, "stage": stage, "reason": reason})
        logger.error("case %s failed (%s): %s; skipped", case, stage, reason)

    def __call__(self, engine: Workflow, batch: Any) -> Any:
        """`iteration_update`: MONAI's iteration on the batch's readable cases; a failing batch's cases are
        recorded and its output is empty."""
        failed = batch.pop(FAILED_CASES, []) if isinstance(batch, dict) else []
        for item in failed:
            self.record(item["case"], item["stage"], item["reason"])
        self.cases += len(failed)
        if isinstance(batch, dict) and not batch:
            engine.state.batch = []
            return []
        names = image_names(batch, self.image_key) if isinstance(batch, Mapping) and self.image_key in batch else []
        self.cases += max(len(names), 1)
        self._stage = "inference"
        if self.fail_fast:
            return engine._iteration(engine, batch)
        try:
            return engine._iteration(engine, batch)
        except Exception as exc:
            reason = failure_reason(exc)
            for name in names or [f"iteration {engine.state.iteration}"]:
                self.record(name, self._stage, reason)
            engine.state.batch, engine.state.output = [], []
            return []

    def _completed(self, engine: Engine) -> None:
        records, cases = self.records, self.cases
        if world_size() > 1:
            gathered: list[Any] = [None] * world_size()
            dist.all_gather_object(gathered, (records, cases))
            records = [r for rank_records, _ in gathered for r in rank_records]
            cases = sum(n for _, n in gathered)
        self.records, self.total = records, cases
        if not is_rank0() or self.fail_fast:
            return  # with fail_fast every case was written (one-case inference, the label server): no summary
        written = cases - len(records)
        if records:
            write_csv_atomic(self.path, records)
            logger.warning("%d cases: %d written, %d failed (listed in %s)", cases, written, len(records), self.path)
        else:
            logger.info("%d cases: %d written, 0 failed", cases, written)

    def exit_on_failure(self) -> None:
        """`SystemExit(1)` with the count when any case failed (the bundle's `finalize`), else nothing."""
        if self.records:
            raise SystemExit(f"{len(self.records)} of {self.total} cases failed; see {self.path}")
