"""Classification metrics (scikit-learn) and the evaluation / prediction reports of SAM-MedCls.

Inputs: `y_true` (N,) class indices 0..K-1 and `probs` (N, K) class probabilities (rows of a
softmax); the predicted class is the row's argmax.

- accuracy; per-class precision / recall / F1 / support over all K classes (0 where undefined,
  i.e. no prediction or no image of the class); macro-F1 averages the classes present in y_true
  or in the predictions (scikit-learn's default label set), so a class that never occurs in the
  evaluation set neither helps nor hurts it.
- ROC AUC one-vs-rest per class (`roc_auc_score` on class k vs the rest); a class absent from
  y_true (or present in all of it) has no ROC curve: its AUC is NaN (null in JSON) and the macro
  AUC averages the classes that have one (NaN when none has). With every class present this is
  scikit-learn's `roc_auc_score(multi_class="ovr", average="macro")`.
- confusion matrix (rows true, columns predicted) as CSV and PNG (matplotlib, Agg canvas).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score

from monaiseg.utils.files import atomic_outputs

logger = logging.getLogger(__name__)

REPORT_FILES = ("summary.json", "per_class.csv", "confusion_matrix.csv", "confusion_matrix.png", "predictions.csv")
PREDICTION_FILES = ("predictions.csv", "predictions.json")


def _check(y_true: np.ndarray, probs: np.ndarray, num_classes: int) -> None:
    if probs.ndim != 2 or probs.shape[1] != num_classes or y_true.shape != (probs.shape[0],) or not len(y_true):
        raise ValueError(
            f"expected y_true (N,) and probs (N, {num_classes}) with N > 0, got {y_true.shape} and {probs.shape}"
        )
    if y_true.min() < 0 or y_true.max() >= num_classes:
        raise ValueError(f"class indices must lie in 0..{num_classes - 1}, got {sorted(set(y_true.tolist()))}")


def roc_auc_per_class(y_true: Sequence[int] | np.ndarray, probs: np.ndarray) -> list[float]:
    """One-vs-rest ROC AUC of each class (K,), NaN for a class without positives or negatives."""
    truth, probs = np.asarray(y_true), np.asarray(probs, dtype=np.float64)
    aucs = []
    for k in range(probs.shape[1]):
        positive = truth == k
        aucs.append(float(roc_auc_score(positive, probs[:, k])) if 0 < positive.sum() < len(truth) else math.nan)
    return aucs


def classification_metrics(y_true: Sequence[int], probs: np.ndarray, class_names: Sequence[str]) -> dict:
    """{"num_images", "accuracy", "macro_f1", "roc_auc_macro", "per_class": {name: {"precision",
    "recall", "f1", "support", "roc_auc"}}, "confusion_matrix": K x K list (rows true)}."""
    truth, probs = np.asarray(y_true).astype(np.int64), np.asarray(probs, dtype=np.float64)
    labels = list(range(len(class_names)))
    _check(truth, probs, len(labels))
    y_pred = probs.argmax(1)
    precision, recall, f1, support = precision_recall_fscore_support(truth, y_pred, labels=labels, zero_division=0)
    aucs = roc_auc_per_class(truth, probs)
    defined = [a for a in aucs if not math.isnan(a)]
    return {
        "num_images": int(len(truth)),
        "accuracy": float(accuracy_score(truth, y_pred)),
        "macro_f1": float(f1_score(truth, y_pred, average="macro", zero_division=0)),
        "roc_auc_macro": float(np.mean(defined)) if defined else math.nan,
        "per_class": {
            name: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
                "roc_auc": aucs[k],
            }
            for k, name in enumerate(class_names)
        },
        "confusion_matrix": confusion_matrix(truth, y_pred, labels=labels).tolist(),
    }


def _json_safe(value):
    """NaN -> None (JSON null), recursively."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _csv_text(rows: Sequence[Sequence]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def confusion_matrix_png(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: str | os.PathLike) -> None:
    """Draw the confusion matrix (counts, rows true, columns predicted) as a PNG image."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(matrix)
    size = 1.5 + 0.6 * len(class_names)
    figure = Figure(figsize=(size + 1, size))
    FigureCanvasAgg(figure)
    ax = figure.add_subplot()
    image = ax.imshow(counts, cmap="Blues", vmin=0)
    figure.colorbar(image, ax=ax)
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right")
    ax.set_yticks(ticks, class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), count in np.ndenumerate(counts):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if count > counts.max() / 2 else "black")
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)


def _prediction_rows(
    image_names: Sequence[str], probs: np.ndarray, class_names: Sequence[str], y_true: Sequence[int] | None = None
) -> list[list]:
    header = [
        "image",
        *(["label", "label_index"] if y_true is not None else []),
        "predicted",
        "predicted_index",
        *(f"prob_{name}" for name in class_names),
    ]
    rows: list[list] = [header]
    for i, (name, p) in enumerate(zip(image_names, probs)):
        k = int(np.argmax(p))
        truth = [class_names[int(y_true[i])], int(y_true[i])] if y_true is not None else []
        rows.append([name, *truth, class_names[k], k, *(f"{v:.6f}" for v in p)])
    return rows


def write_classification_report(
    output_dir: str | os.PathLike,
    y_true: Sequence[int],
    probs: np.ndarray,
    class_names: Sequence[str],
    image_names: Sequence[str],
    extra: dict | None = None,
) -> dict:
    """Write `REPORT_FILES` to `output_dir` all at once (none if anything fails): summary.json
    (`classification_metrics` + `extra`), per_class.csv, confusion_matrix.csv / .png and
    predictions.csv (one row per image). Returns the summary."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(image_names) != len(probs):
        raise ValueError(f"{len(image_names)} image names for {len(probs)} predictions")
    summary = {**classification_metrics(y_true, probs, class_names), **(extra or {})}
    per_class = [["class", "precision", "recall", "f1", "support", "roc_auc"]] + [
        [name, *(summary["per_class"][name][m] for m in ("precision", "recall", "f1", "support", "roc_auc"))]
        for name in class_names
    ]
    matrix = [["true \\ predicted", *class_names]] + [
        [name, *row] for name, row in zip(class_names, summary["confusion_matrix"])
    ]
    out = Path(output_dir)
    with atomic_outputs(*(out / name for name in REPORT_FILES)) as (s, pc, cm, png, pred):
        s.write_text(json.dumps(_json_safe(summary), indent=2, allow_nan=False) + "\n")
        pc.write_text(_csv_text(per_class))
        cm.write_text(_csv_text(matrix))
        confusion_matrix_png(summary["confusion_matrix"], class_names, png)
        pred.write_text(_csv_text(_prediction_rows(image_names, probs, class_names, y_true)))
    logger.info(
        "classification report written to %s (accuracy %.4f, macro-F1 %.4f)",
        out,
        summary["accuracy"],
        summary["macro_f1"],
    )
    return summary


def write_predictions(
    output_dir: str | os.PathLike, image_names: Sequence[str], probs: np.ndarray, class_names: Sequence[str]
) -> list[dict]:
    """Write `PREDICTION_FILES` (per image: predicted class, its index and every class
    probability) to `output_dir` atomically; returns the JSON records."""
    probs = np.asarray(probs, dtype=np.float64)
    records = [
        {
            "image": name,
            "predicted": class_names[int(np.argmax(p))],
            "predicted_index": int(np.argmax(p)),
            "probabilities": {c: float(v) for c, v in zip(class_names, p)},
        }
        for name, p in zip(image_names, probs)
    ]
    out = Path(output_dir)
    with atomic_outputs(*(out / name for name in PREDICTION_FILES)) as (table, records_json):
        table.write_text(_csv_text(_prediction_rows(image_names, probs, class_names)))
        records_json.write_text(json.dumps(records, indent=2) + "\n")
    logger.info("predictions of %d images written to %s", len(records), out)
    return records
