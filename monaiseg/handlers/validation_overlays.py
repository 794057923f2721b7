"""Pictures of a few validation cases at each validation epoch, as files and MLflow artifacts."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch.distributed as dist
from ignite.engine import Events
from monai.engines import Workflow

from monaiseg.utils.files import atomic_outputs
from monaiseg.visualize import confusion_matrix_png, png_bytes

from .case_views import Stopwatch, case_name, class_probabilities, segmentation_view
from .mlflow_run import log_to_mlflow_run

logger = logging.getLogger(__name__)


def check_writable(folder: str | os.PathLike) -> Path:
    """Create `folder` if needed and check that files can be written there; one clear error if not."""
    path = Path(folder)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as e:
        raise OSError(f"{path}: cannot write to the output folder ({e.strerror or e})") from e
    return path


class ValidationOverlays:
    """Evaluator handler for the validation during training: every `interval`-th epoch (the trainer's
    epoch, as `ValidationHandler` passes it; 0 turns it off) the first `num_cases` validation cases are
    drawn (`monaiseg.visualize.case_picture`: image, prediction and ground-truth contours, the case's
    Dice in the title; the key slice of a volume, or a strip of `frames` frames of a video) and written to
    `<output_dir>/overlays/epoch_NNN/<case>.png`, then logged to the MLflow run of the first
    `MLFlowHandler` among `mlflow_handlers` under the same `overlays/epoch_NNN/` (when tracking is on).
    With `class_names` (classification: `pred` (K,) logits, `label` a class index) the epoch's
    confusion matrix over all validation cases is drawn instead, as `overlays/epoch_NNN/confusion_matrix.png`.
    A case that cannot be drawn is skipped with a logged reason. Only rank 0 draws. `seconds` holds the
    time spent in this handler (the overlay cost per validation epoch is logged)."""

    def __init__(
        self,
        output_dir: str | os.PathLike,
        interval: int = 1,
        num_cases: int = 4,
        frames: int = 1,
        mlflow_handlers: Iterable[Any] = (),
        class_names: Sequence[str] | dict | None = None,
        size: int = 256,
    ):
        self.interval, self.num_cases, self.frames, self.size = int(interval), int(num_cases), int(frames), size
        self.mlflow_handlers = list(mlflow_handlers or [])
        self.class_names = list(class_names.values()) if isinstance(class_names, dict) else class_names
        self.folder = Path(output_dir) / "overlays"
        if self.interval > 0:
            check_writable(output_dir)
        self.pictures: dict[str, bytes] = {}
        self.confusion: np.ndarray | None = None
        self.stopwatch, self.seen = Stopwatch(), 0

    def attach(self, engine: Workflow) -> ValidationOverlays:
        if self.interval > 0:
            engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
            engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.write)
        return self

    def active(self, engine: Workflow) -> bool:
        rank0 = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
        return rank0 and engine.state.epoch % self.interval == 0

    def reset(self, engine: Workflow) -> None:
        self.pictures, self.stopwatch, self.seen = {}, Stopwatch(), 0
        self.confusion = None if self.class_names is None else np.zeros((len(self.class_names),) * 2, np.int64)

    def collect(self, engine: Workflow) -> None:
        if not self.active(engine):
            return
        with self.stopwatch:
            for out in engine.state.output:
                self.seen += 1
                index = self.seen
                try:
                    if self.confusion is not None:
                        probs, label = class_probabilities(out)
                        self.confusion[label, int(probs.argmax())] += 1
                    elif len(self.pictures) < self.num_cases:
                        name = case_name(out, index)
                        name = name if name not in self.pictures else f"{name}_{index}"  # frames of other videos
                        self.pictures[name] = png_bytes(segmentation_view(out, self.frames, self.size)[1])
                except Exception as e:  # a picture is never worth a failed training
                    logger.warning("validation overlay: case %s skipped: %s", case_name(out, index), e)

    def write(self, engine: Workflow) -> None:
        if not self.active(engine):
            return
        with self.stopwatch:
            folder = self.folder / f"epoch_{engine.state.epoch:03d}"
            files = dict(self.pictures)
            if self.confusion is not None and self.class_names is not None:
                accuracy = np.trace(self.confusion) / max(int(self.confusion.sum()), 1)
                title = f"epoch {engine.state.epoch}: accuracy {accuracy:.3f}"
                files = {"confusion_matrix": confusion_matrix_png(self.confusion, self.class_names, title)}
            paths = []
            for name, data in files.items():
                path = folder / f"{name}.png"
                with atomic_outputs(path) as (tmp,):
                    tmp.write_bytes(data)
                paths.append(path)
            logged = log_to_mlflow_run(self.mlflow_handlers, paths, f"overlays/{folder.name}")
        logger.info(
            "validation overlays: %d pictures in %s%s, %.2f s",
            len(paths),
            folder,
            " and MLflow" if logged else "",
            self.stopwatch.seconds,
        )
