"""`report.html`: one self-contained page (pictures embedded as base64) of an evaluation run."""

from __future__ import annotations

import base64
import html
import inspect
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Events
from monai.engines import Workflow

from monaiseg.utils.files import atomic_outputs
from monaiseg.visualize import confusion_matrix_png, metric_plot_png, png_bytes

from .case_views import case_name, class_probabilities, classification_view, segmentation_view
from .mlflow_run import log_to_mlflow_run
from .validation_overlays import check_writable

logger = logging.getLogger(__name__)

STYLE = (
    "body{font-family:sans-serif;margin:1.5em;max-width:1200px}table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#eee}"
    "figure{display:inline-block;margin:4px}figcaption{font-size:80%}pre{background:#f6f6f6;padding:8px;"
    "overflow:auto;max-height:40em;font-size:80%}"
)


def running_bundle_config() -> dict | None:
    """The merged config of the MONAI bundle being parsed (the `ConfigParser` up the call stack, as
    `monai.bundle run` reads it, overrides included), or None outside a bundle."""
    from monai.bundle import ConfigParser

    frame = inspect.currentframe()
    while frame is not None:
        for value in frame.f_locals.values():
            if isinstance(value, ConfigParser):
                return json.loads(json.dumps(value.get(), default=str))
        frame = frame.f_back
    return None


def _img(data: bytes, alt: str) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(data).decode()}" alt="{html.escape(alt)}">'


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], css_class: str) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4f}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="{css_class}"><tr>{head}</tr>{body}</table>'


class EvaluationReport:
    """Evaluator handler writing `filename` (report.html) when the evaluator completes: the summary
    table (`engine.state.metrics`, cases, per-label means), a per-case metric plot (box + strip per
    label: the metrics saved with `save_details`, else each case's Dice per label computed here), the
    `num_cases` worst and best cases as overlays (ranked by the case's mean Dice over its labels; for
    classification, with `class_names`, by the true class's probability, plus the confusion matrix),
    and the config that produced it (`config`, by default the running bundle's merged config). Logged to
    the MLflow run of the first `MLFlowHandler` among `mlflow_handlers` when tracking is on. The output
    folder is checked when the handler is made (one clear error before evaluation starts); a case that
    cannot be drawn is left out of the pictures with a logged reason. `label_names`: {label value: name},
    or the names of label values 1, 2, ...; `frames` as in `ValidationOverlays`."""

    def __init__(
        self,
        filename: str | os.PathLike,
        label_names: Sequence[str] | dict | None = None,
        class_names: Sequence[str] | dict | None = None,
        mlflow_handlers: Iterable[Any] = (),
        num_cases: int = 5,
        frames: int = 1,
        config: dict | None = None,
        title: str | None = None,
    ):
        self.filename = Path(filename)
        check_writable(self.filename.parent)
        if isinstance(label_names, dict):  # label value -> name
            self.label_names = {int(k): str(v) for k, v in label_names.items()}
        else:  # the names of label values 1, 2, ...
            self.label_names = {i: str(n) for i, n in enumerate(label_names or [], start=1)}
        self.class_names = [
            str(n) for n in (class_names.values() if isinstance(class_names, dict) else class_names or [])
        ]
        self.mlflow_handlers = list(mlflow_handlers or [])
        self.num_cases, self.frames = num_cases, frames
        self.config = config if config is not None else running_bundle_config()
        name = (self.config or {}).get("_meta_", {}).get("name") if isinstance(self.config, dict) else None
        self.title = title or (f"{name}: evaluation report" if name else "Evaluation report")
        self.reset()

    def attach(self, engine: Workflow) -> EvaluationReport:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)
        return self

    def reset(self, engine: Workflow | None = None) -> None:
        self.names: list[str] = []
        self.scores: list[float] = []
        self.per_label: dict[str, list[float]] = {}  # label name -> per-case values (NaN where absent)
        self.pictures: list[tuple[float, str, bytes]] = []  # the worst and best so far
        self.skipped: list[str] = []
        n = len(self.class_names) if self.class_names else 0
        self.confusion = np.zeros((n, n), np.int64)

    def _label_name(self, value: int) -> str:
        return self.label_names.get(value, str(value))

    def collect(self, engine: Workflow) -> None:
        for out in engine.state.output:
            name = case_name(out, len(self.names))
            try:
                if self.class_names:
                    probs, true_class = class_probabilities(out)
                    self.confusion[true_class, int(probs.argmax())] += 1
                    score, picture = classification_view(out, self.class_names)
                    values: dict[str, float] = {self.class_names[true_class]: score}
                else:
                    dice, picture = segmentation_view(out, self.frames)
                    score = float(np.mean(list(dice.values()))) if dice else 1.0
                    values = {self._label_name(v): d for v, d in dice.items()}
            except Exception as e:  # the report leaves the case's picture out, never the evaluation
                logger.warning("evaluation report: case %s not drawn: %s", name, e)
                self.skipped.append(f"{name}: {e}")
                continue
            for label in values.keys() - self.per_label.keys():
                self.per_label[label] = [math.nan] * len(self.names)
            for label, series in self.per_label.items():
                series.append(values.get(label, math.nan))
            self.names.append(name)
            self.scores.append(score)
            self.pictures.append((score, name, png_bytes(picture)))
            self.pictures.sort(key=lambda t: t[0])
            if len(self.pictures) > 2 * self.num_cases:
                del self.pictures[self.num_cases : -self.num_cases]

    def _detail_values(self, engine: Workflow) -> dict[str, dict[str, list[float]]]:
        details = getattr(engine.state, "metric_details", None) or {}
        values: dict[str, dict[str, list[float]]] = {}
        for metric, table in details.items():
            t = torch.as_tensor(table).float().reshape(len(table), -1).cpu().numpy()  # (cases, labels)
            names = [self._label_name(c + 1) for c in range(t.shape[1])]
            values[metric] = {n: t[:, c].tolist() for c, n in enumerate(names)}
        return values

    def write(self, engine: Workflow) -> None:
        metric = "p(true class)" if self.class_names else "dice (per case, this report)"
        values = self._detail_values(engine) or {metric: self.per_label}
        metrics = {k: v for k, v in engine.state.metrics.items() if isinstance(v, (int, float))}
        parts = [f"<h1>{html.escape(self.title)}</h1>", "<h2>Summary</h2>"]
        parts.append(_table(["metric", "value"], [*metrics.items(), ("cases", len(self.names))], "summary"))
        labels = sorted({n for per_metric in values.values() for n in per_metric})
        rows = [[m, *(float(np.nanmean(values[m][n])) if n in values[m] else "" for n in labels)] for m in values]
        parts.append(_table(["mean per label", *labels], rows, "per-label"))
        if self.class_names:
            parts += ["<h2>Confusion matrix</h2>", _img(confusion_matrix_png(self.confusion, self.class_names), "cm")]
        if any(np.isfinite(v).any() for per_metric in values.values() for v in per_metric.values()):
            parts += ["<h2>Per-case metrics</h2>", _img(metric_plot_png(values), "per-case metric plot")]
        worst = self.pictures[: self.num_cases]
        best = self.pictures[::-1][: self.num_cases]  # with fewer than 2 * num_cases cases both lists share some
        for heading, cases in ((f"{len(worst)} worst cases", worst), (f"{len(best)} best cases", best)):
            figures = "".join(
                f"<figure>{_img(png, name)}<figcaption>{html.escape(name)}: {score:.3f}</figcaption></figure>"
                for score, name, png in cases
            )
            parts += [f"<h2>{heading}</h2>", f'<div class="cases">{figures}</div>']
        if self.skipped:
            parts += [
                "<h2>Cases not drawn</h2>",
                "<ul>",
                *(f"<li>{html.escape(s)}</li>" for s in self.skipped),
                "</ul>",
            ]
        config = json.dumps(self.config, indent=2) if self.config is not None else "(not available)"
        parts += ["<h2>Config</h2>", f'<pre class="config">{html.escape(config)}</pre>']
        page = (
            f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>'
            f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
        )
        with atomic_outputs(self.filename) as (tmp,):
            tmp.write_text(page, encoding="utf-8")
        logged = log_to_mlflow_run(self.mlflow_handlers, [self.filename])
        logger.info("evaluation report written to %s%s", self.filename, " and MLflow" if logged else "")
