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
