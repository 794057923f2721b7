"""`EvaluationReport`: report.html of an evaluation (summary, per-case plot, worst / best cases, config)."""

from __future__ import annotations

import base64
import json
import re

import pytest
import torch
from conftest import BUNDLES
from ignite.engine import Engine, Events
from monai.bundle import ConfigParser
from monai.data import MetaTensor

from monaiseg.handlers import EvaluationReport

from .test_validation_overlays import fake_tracker, segmentation_case


def evaluate(report: EvaluationReport, items: list[dict], details: dict | None = None) -> str:
    engine = Engine(lambda e, batch: batch)

    def metrics(e):
        e.state.metrics = {"val_mean_dice": 0.5, "note": "not a number"}
        e.state.metric_details = details or {}

    engine.add_event_handler(Events.EPOCH_COMPLETED, metrics)
    report.attach(engine)
    engine.run([[item] for item in items], max_epochs=1)
    return report.filename.read_text()


def test_report_holds_the_summary_plot_worst_and_best_cases_and_config_in_one_file(tmp_path):
    tracker = fake_tracker()
    items = []
    for i in range(12):
        case = segmentation_case(f"case{i:02d}")
        case["pred"] = torch.roll(case["label"], i % 6, dims=1)  # Dice falls with the shift
        items.append(case)
    report = EvaluationReport(
        tmp_path / "eval" / "report.html", label_names=["liver"], mlflow_handlers=[tracker], config={"lr": 0.1}
    )
    page = evaluate(report, items, details={"val_mean_dice": torch.rand(12, 1)})
    assert '<table class="summary">' in page and "val_mean_dice" in page and "not a number" not in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 1 + 5 + 5  # plot, 5 worst, 5 best
    assert all(base64.b64decode(b).startswith(b"\x89PNG") for b in images)
    worst = page[page.index("5 worst") : page.index("5 best")]
    assert "case00" not in worst and "case05" in worst  # shift 0: Dice 1, shift 5: the lowest
    assert "case00" in page[page.index("5 best") :]
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', page))  # nothing outside the file
    assert "href=" not in page
    assert "&quot;lr&quot;: 0.1" in page
    assert [a[1:] for a in tracker.client.logged] == [(str(report.filename), None)]


def test_classification_report_has_the_confusion_matrix_and_skipped_cases_are_listed(tmp_path):
    items = [
        {"image": torch.rand(3, 16, 16), "pred": torch.tensor([2.0, 0.0]), "label": torch.tensor(0)},
        {"image": torch.rand(3, 16, 16), "pred": torch.tensor([2.0, 0.0]), "label": torch.tensor(1)},
        {"image": MetaTensor(torch.rand(3), meta={"filename_or_obj": "bad.png"}), "pred": torch.zeros(2), "label": 0},
    ]
    page = evaluate(EvaluationReport(tmp_path / "report.html", class_names={"0": "a", "1": "b"}, config={}), items)
    assert "Confusion matrix" in page and "Cases not drawn" in page and "bad:" in page
    assert page.count("data:image/png;base64,") == 1 + 1 + 2 + 2  # matrix, plot, 2 worst, 2 best


def test_the_running_bundle_config_is_found_and_a_bad_folder_fails_first(tmp_path):
    parser = ConfigParser(
        {
            "_meta_": {"name": "demo"},
            "lr": 0.25,
            "report": {"_target_": "monaiseg.handlers.EvaluationReport", "filename": str(tmp_path / "r.html")},
        }
    )
    report = parser.get_parsed_content("report")
    assert report.config["lr"] == 0.25 and report.title == "demo: evaluation report"
    (tmp_path / "file").write_text("")
    with pytest.raises(OSError, match="cannot write to the output folder"):
        EvaluationReport(tmp_path / "file" / "report.html")


@pytest.mark.parametrize("bundle", BUNDLES, ids=[b.name for b in BUNDLES])
def test_every_bundle_names_the_report_and_the_overlays(bundle):
    configs = bundle / "configs"
    evaluate_lines = json.loads((configs / "evaluate.json").read_text())["initialize"]
    assert any("monaiseg.handlers.EvaluationReport(" in line for line in evaluate_lines)
    train = json.loads((configs / "train.json").read_text())
    if "validate" in train:  # bundles that validate during training log overlays, in one and several processes
        for name in ("train.json", "multi_gpu_train.json"):
            lines = json.loads((configs / name).read_text())["initialize"]
            assert sum("monaiseg.handlers.ValidationOverlays(" in line for line in lines) == 1, name
        assert json.loads((configs / "tiny.json").read_text())["overlay_interval"] == 0  # off unless asked


def test_means_say_which_labels_they_include_and_agree_with_the_picture_titles(tmp_path):
    """Labels 1-3; case a: label 1 perfect, label 2 Dice 2 * 4 / (8 + 4) = 2/3, label 3 empty in both (upstream
    counts it 1); case b: label 1 perfect only. Present-label means: a 5/6, b 1; over cases 11/12."""

    def case(name: str, half: bool) -> dict:
        gt = torch.zeros(1, 16, 16)
        gt[0, 2:6, 2:6] = 1
        pred = gt.clone()
        if half:
            gt[0, 10:12, 10:14] = 2  # 8 pixels of label 2
            pred[0, 10:12, 10:12] = 2  # 4 of them predicted
        return {
            "image": MetaTensor(torch.rand(1, 16, 16), meta={"filename_or_obj": f"/d/{name}.png"}),
            "pred": pred,
            "label": gt,
        }

    details = {"val_mean_dice": torch.tensor([[1.0, 2 / 3, 1.0], [1.0, 1.0, 1.0]])}  # upstream: empty/empty = 1
    report = EvaluationReport(tmp_path / "report.html", label_names=["liver", "lesion", "vessel"], config={})
    page = evaluate(report, [case("a", True), case("b", False)], details=details)
    summary = page[page.index('<table class="summary">') : page.index("</table>")]
    assert "all 3 labels; a label empty in both ground truth and prediction counts 1 (upstream convention)" in summary
    assert "<td>dice, present labels</td><td>0.9167</td>" in summary  # (5/6 + 1) / 2
    per_label = page[page.index('<table class="per-label">') :]
    per_label = per_label[: per_label.index("</table>")]
    # present cases only: lesion is present in case a alone (2/3), vessel in none (left blank by nanmean)
    assert "(cases where it is present)" in per_label and "<td>0.6667</td>" in per_label
    assert report.cases[0]["score"] == pytest.approx(5 / 6)  # the number in case a's picture title


@pytest.mark.parametrize("image_shape", [(1, 16, 16, 1), (3, 16, 16, 1), (16, 16, 3)], ids=["grey", "rgb", "rgb-last"])
def test_a_2d_image_with_a_trailing_axis_is_drawn_not_skipped(tmp_path, image_shape):
    """A 2D image as a bundle loads a PNG, (C, H, W, 1), beside (K, H, W) predictions: the layout every 2D
    bundle's report skipped ("prediction of shape (16, 16) does not match the image's (16, 16, 1)")."""
    label = torch.zeros(1, 16, 16)
    label[0, 4:10, 4:10] = 1
    item = {
        "image": MetaTensor(torch.rand(image_shape), meta={"filename_or_obj": "/d/cell.png"}),
        "pred": torch.cat([1 - label, label]),
        "label": torch.cat([1 - label, label]),
    }
    page = evaluate(EvaluationReport(tmp_path / "report.html", label_names=["cell"], config={}), [item])
    assert "Cases not drawn" not in page and "1 worst cases" in page
    assert page.count("data:image/png;base64,") == 1 + 1 + 1  # plot, the worst, the best (the same case)
