"""Classification metrics and reports on hand-made cases with hand-computed values."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import roc_auc_score

from monaiseg.metrics import classification as cls
from monaiseg.metrics.classification import (
    PREDICTION_FILES,
    REPORT_FILES,
    classification_metrics,
    roc_auc_per_class,
    write_classification_report,
    write_predictions,
)

NAMES = ["a", "b", "c"]
# 6 images, 3 classes: y_true 0 0 1 1 2 2, argmax predictions 0 1 1 1 2 0
Y_TRUE = [0, 0, 1, 1, 2, 2]
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.4, 0.5, 0.1],
        [0.1, 0.8, 0.1],
        [0.2, 0.6, 0.2],
        [0.1, 0.2, 0.7],
        [0.6, 0.1, 0.3],
    ]
)


def test_hand_computed_metrics():
    m = classification_metrics(Y_TRUE, PROBS, NAMES)
    # confusion (rows true): a -> a, b; b -> b, b; c -> c, a
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    # a: TP 1 FP 1 FN 1 -> P 1/2 R 1/2 F1 1/2; b: TP 2 FP 1 FN 0 -> P 2/3 R 1 F1 4/5;
    # c: TP 1 FP 0 FN 1 -> P 1 R 1/2 F1 2/3
    expected = {"a": (1 / 2, 1 / 2, 1 / 2), "b": (2 / 3, 1.0, 4 / 5), "c": (1.0, 1 / 2, 2 / 3)}
    for name, (p, r, f) in expected.items():
        row = m["per_class"][name]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p, r, f, 2))
    assert m["macro_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)
    # AUC a: positives 0.7, 0.4 vs negatives 0.1 0.2 0.1 0.6 -> 7 of 8 pairs ranked right; b and c: 8 of 8
    assert [m["per_class"][n]["roc_auc"] for n in NAMES] == pytest.approx([7 / 8, 1.0, 1.0])
    assert m["roc_auc_macro"] == pytest.approx((7 / 8 + 2) / 3)
    assert m["roc_auc_macro"] == pytest.approx(roc_auc_score(Y_TRUE, PROBS, multi_class="ovr", average="macro"))
    assert m["num_images"] == 6


def test_class_absent_from_y_true():
    probs = np.concatenate([PROBS * 0.9, np.full((6, 1), 0.1)], 1)  # a 4th class "d", never true, never predicted
    m = classification_metrics(Y_TRUE, probs, [*NAMES, "d"])
    assert math.isnan(m["per_class"]["d"]["roc_auc"])
    assert m["roc_auc_macro"] == pytest.approx((7 / 8 + 2) / 3)  # over the classes that have a ROC curve
    assert m["per_class"]["d"] == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "support": 0,
        "roc_auc": m["per_class"]["d"]["roc_auc"],
    }
    assert m["macro_f1"] == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3)  # d neither helps nor hurts
    assert m["confusion_matrix"][3] == [0, 0, 0, 0]
    # one class only in y_true: no class has both positives and negatives, so every AUC is NaN
    assert all(math.isnan(a) for a in roc_auc_per_class([0, 0, 0], np.eye(3)))
    assert math.isnan(classification_metrics([0, 0, 0], np.eye(3), NAMES)["roc_auc_macro"])


def test_bad_shapes_and_labels():
    with pytest.raises(ValueError, match=r"probs \(N, 4\)"):
        classification_metrics(Y_TRUE, PROBS, [*NAMES, "d"])
    with pytest.raises(ValueError, match="class indices must lie in 0..2"):
        classification_metrics([0, 1, 3, 1, 2, 2], PROBS, NAMES)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def test_report_files(tmp_path):
    images = [f"img{i}.png" for i in range(6)]
    summary = write_classification_report(tmp_path, Y_TRUE, PROBS, NAMES, images, extra={"images_per_second": 2.0})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(REPORT_FILES)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["accuracy"] == pytest.approx(4 / 6) and saved["images_per_second"] == 2.0
    assert saved["confusion_matrix"] == summary["confusion_matrix"]
    per_class = read_csv(tmp_path / "per_class.csv")
    assert per_class[0] == ["class", "precision", "recall", "f1", "support", "roc_auc"]
    assert per_class[2][0] == "b" and float(per_class[2][3]) == pytest.approx(0.8) and per_class[2][4] == "2"
    assert read_csv(tmp_path / "confusion_matrix.csv") == [
        ["true \\ predicted", "a", "b", "c"],
        ["a", "1", "1", "0"],
        ["b", "0", "2", "0"],
        ["c", "1", "0", "1"],
    ]
    predictions = read_csv(tmp_path / "predictions.csv")
    assert predictions[0] == [
        "image",
        "label",
        "label_index",
        "predicted",
        "predicted_index",
        "prob_a",
        "prob_b",
        "prob_c",
    ]
    assert predictions[2][:5] == ["img1.png", "a", "0", "b", "1"] and float(predictions[2][6]) == pytest.approx(0.5)
    with Image.open(tmp_path / "confusion_matrix.png") as png:
        assert png.format == "PNG" and min(png.size) > 100


def test_absent_class_is_null_in_json(tmp_path):
    probs = np.concatenate([PROBS * 0.9, np.full((6, 1), 0.1)], 1)
    write_classification_report(tmp_path, Y_TRUE, probs, [*NAMES, "d"], [f"i{i}" for i in range(6)])
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["per_class"]["d"]["roc_auc"] is None and saved["per_class"]["a"]["roc_auc"] == pytest.approx(7 / 8)


def test_report_is_all_or_nothing(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="5 image names for 6 predictions"):
        write_classification_report(tmp_path / "a", Y_TRUE, PROBS, NAMES, ["x"] * 5)

    def broken_png(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(cls, "confusion_matrix_png", broken_png)
    with pytest.raises(RuntimeError, match="disk full"):
        write_classification_report(tmp_path / "b", Y_TRUE, PROBS, NAMES, ["x"] * 6)
    assert not (tmp_path / "a").exists() and list((tmp_path / "b").iterdir()) == []


def test_write_predictions(tmp_path):
    records = write_predictions(tmp_path, ["p.png", "q.png"], PROBS[[1, 4]], NAMES)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(PREDICTION_FILES)
    assert [r["predicted"] for r in records] == ["b", "c"] and records[1]["predicted_index"] == 2
    assert json.loads((tmp_path / "predictions.json").read_text()) == records
    rows = read_csv(tmp_path / "predictions.csv")
    assert rows[0] == ["image", "predicted", "predicted_index", "prob_a", "prob_b", "prob_c"]
    assert rows[1][:3] == ["p.png", "b", "1"] and float(rows[1][3]) == pytest.approx(0.4)
