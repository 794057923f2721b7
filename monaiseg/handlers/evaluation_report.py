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

from monaiseg.utils.distributed import concatenated_to_dataset_order, gather_in_dataset_order, is_rank0
from monaiseg.utils.files import atomic_outputs
from monaiseg.visualize import confusion_matrix_png, metric_plot_png, png_bytes

from .case_views import case_name, class_probabilities, classification_view, segmentation_view
from .mlflow_run import log_to_mlflow_run
from .validation_overlays import check_writable

logger = logging.getLogger(__name__)

STYLE = (
    "body{font-family:sans-serif;margin:1.5em;max-width:1200px}img{max-width:100%;height:auto}"
    "table{border-collapse:collapse;margin:.5em 0}"
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


def _worst_and_best(indices: list[int], cases: list[dict], k: int) -> list[int]:
    """`indices` of `cases` ordered by score (ties in list order), only the k lowest and k highest kept."""
    ordered = sorted(indices, key=lambda i: cases[i]["score"])
    for i in ordered[k : len(ordered) - k]:
        cases[i]["picture"] = None
    return ordered[:k] + ordered[max(k, len(ordered) - k) :]


PRESENT = "labels present in the case's ground truth or prediction, averaged per case (as in the pictures)"


def _labels_included(table: dict[str, list[float]] | None, present: list[set[str]] | None) -> str:
    """Which labels a metric's mean includes, read from its per-case values (`table`: label -> values) at the
    cases where a label is absent from both ground truth and prediction (`present`)."""
    if table is None:
        return "as the metric defines it"
    absent = [v for label, vs in table.items() for case, v in enumerate(vs) if present and label not in present[case]]
    everything = f"all {len(table)} labels"
    if not absent:
        return everything if present else f"{everything} (presence per case unknown)"
    if all(v == 1.0 for v in absent):
        return f"{everything}; a label empty in both ground truth and prediction counts 1 (upstream convention)"
    if all(math.isnan(v) for v in absent):
        return f"{everything}; a label empty in both ground truth and prediction is left out"
    return f"{everything}; labels empty in both ground truth and prediction included"


def _mean(values: Sequence[float]) -> float | str:
    """Mean of the finite `values`; "" when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else ""


def _present_only(table: dict[str, list[float]], present: list[set[str]] | None) -> dict[str, list[float]]:
    """`table` (label -> per-case values) with NaN where the label is absent from the case's ground truth
    and prediction; unchanged when presence is unknown or does not cover the cases."""
    if not present or any(len(vs) != len(present) for vs in table.values()):
        return table
    return {label: [v if label in present[c] else math.nan for c, v in enumerate(vs)] for label, vs in table.items()}


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
    or the names of label values 1, 2, ...; `frames` as in `ValidationOverlays`. Under torch.distributed
    each rank collects its shard; the cases are merged in dataset order at the end and rank 0 alone writes."""

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
        # one record per evaluated item, in this rank's order: name, then score, values (label -> Dice / class ->
        # p(true class)), picture (PNG, kept for this rank's worst and best only), confusion (true, predicted);
        # or name and skipped (the reason it was not drawn)
        self.cases: list[dict[str, Any]] = []
        self._drawn: list[int] = []  # indices of the cases with a picture, by score

    def _label_name(self, value: int) -> str:
        return self.label_names.get(value, str(value))

    def collect(self, engine: Workflow) -> None:
        for out in engine.state.output:
            name, confusion = case_name(out, len(self.cases)), None
            try:
                if self.class_names:
                    probs, true_class = class_probabilities(out)
                    confusion = (true_class, int(probs.argmax()))
                    score, picture = classification_view(out, self.class_names)
                    values: dict[str, float] = {self.class_names[true_class]: score}
                else:
                    dice, picture = segmentation_view(out, self.frames)
                    score = float(np.mean(list(dice.values()))) if dice else 1.0
                    values = {self._label_name(v): d for v, d in dice.items()}
            except Exception as e:  # the report leaves the case's picture out, never the evaluation
                logger.warning("evaluation report: case %s not drawn: %s", name, e)
                self.cases.append({"name": name, "skipped": str(e), "confusion": confusion})
                continue
            case = {"name": name, "score": score, "values": values, "picture": png_bytes(picture)}
            self.cases.append({**case, "confusion": confusion})
            self._drawn = _worst_and_best([*self._drawn, len(self.cases) - 1], self.cases, self.num_cases)

    def merged(self) -> dict[str, Any]:
        """The cases of every rank in dataset order (a collective call): names, scores, per_label (label ->
        per-case values, NaN where absent), pictures (score, name, PNG) of the `num_cases` worst and best,
        skipped ("name: reason"), the confusion matrix and present (each case's labels present in its ground
        truth or prediction; None when a case was skipped); as one process evaluating them all gives them."""
        cases = gather_in_dataset_order(self.cases)
        scored = [c for c in cases if "skipped" not in c]
        labels = list(dict.fromkeys(label for c in scored for label in c["values"]))
        n = len(self.class_names)
        confusion = np.zeros((n, n), np.int64)
        for c in cases:
            if c["confusion"] is not None:
                confusion[c["confusion"]] += 1
        drawn = _worst_and_best([i for i, c in enumerate(cases) if c.get("picture")], cases, self.num_cases)
        return {
            "names": [c["name"] for c in scored],
            "scores": [c["score"] for c in scored],
            "per_label": {label: [c["values"].get(label, math.nan) for c in scored] for label in labels},
            "pictures": [(cases[i]["score"], cases[i]["name"], cases[i]["picture"]) for i in drawn],
            "skipped": [f"{c['name']}: {c['skipped']}" for c in cases if "skipped" in c],
            "confusion": confusion,
            "present": [set(c["values"]) for c in scored] if len(scored) == len(cases) else None,
        }

    def _detail_values(self, engine: Workflow) -> dict[str, dict[str, list[float]]]:
        details = getattr(engine.state, "metric_details", None) or {}
        values: dict[str, dict[str, list[float]]] = {}
        for metric, table in details.items():
            t = torch.as_tensor(table).float().reshape(len(table), -1).cpu().numpy()  # (cases, labels)
            t = concatenated_to_dataset_order(t)  # MONAI gathered the ranks' cases one rank after another
            names = [self._label_name(c + 1) for c in range(t.shape[1])]
            values[metric] = {n: t[:, c].tolist() for c, n in enumerate(names)}
        return values

    def write(self, engine: Workflow) -> None:
        merged = self.merged()
        if not is_rank0():
            return
        metric = "p(true class)" if self.class_names else "dice (per case, this report)"
        details = self._detail_values(engine)
        present = merged["present"] if not self.class_names else None
        values = details or {metric: merged["per_label"]}
        metrics = {k: v for k, v in engine.state.metrics.items() if isinstance(v, (int, float))}
        parts = [f"<h1>{html.escape(self.title)}</h1>", "<h2>Summary</h2>"]
        rows: list[Sequence[Any]] = [(m, v, _labels_included(details.get(m), present)) for m, v in metrics.items()]
        if not self.class_names and merged["scores"]:
            rows.append(("dice, present labels", float(np.mean(merged["scores"])), PRESENT))
        rows.append(("cases", len(merged["names"]), ""))
        parts.append(_table(["metric", "value", "labels included"], rows, "summary"))
        shown = {m: _present_only(v, present) for m, v in values.items()} if details else values
        labels = sorted({n for per_metric in shown.values() for n in per_metric})
        means = [[m, *(_mean(shown[m].get(n, [])) for n in labels)] for m in shown]
        caption = "mean per label" + (" (cases where it is present)" if details and present else "")
        parts.append(_table([caption, *labels], means, "per-label"))
        if self.class_names:
            parts += [
                "<h2>Confusion matrix</h2>",
                _img(confusion_matrix_png(merged["confusion"], self.class_names), "cm"),
            ]
        if any(np.isfinite(v).any() for per_metric in shown.values() for v in per_metric.values()):
            parts += ["<h2>Per-case metrics</h2>", _img(metric_plot_png(shown), "per-case metric plot")]
        worst = merged["pictures"][: self.num_cases]
        best = merged["pictures"][::-1][: self.num_cases]  # with fewer than 2 * num_cases cases both lists share some
        for heading, cases in ((f"{len(worst)} worst cases", worst), (f"{len(best)} best cases", best)):
            figures = "".join(
                f"<figure>{_img(png, name)}<figcaption>{html.escape(name)}: {score:.3f}</figcaption></figure>"
                for score, name, png in cases
            )
            parts += [f"<h2>{heading}</h2>", f'<div class="cases">{figures}</div>']
        if merged["skipped"]:
            parts += [
                "<h2>Cases not drawn</h2>",
                "<ul>",
                *(f"<li>{html.escape(s)}</li>" for s in merged["skipped"]),
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
