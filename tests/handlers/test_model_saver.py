"""Engine handlers of the sam2 bundles: atomic model saving in the official layout, best-model saving,
per-label metrics summaries."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest
import torch
from ignite.engine import Engine, Events

from monaiseg.handlers.metrics_summary import MetricsSummaryWriter
from monaiseg.handlers.model_saver import BestModelSaver, save_model_atomic
from monaiseg.networks import build_sam2_segmenter


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_sam2_segmenter("tiny", image_size=256).eval()


def test_save_model_atomic_writes_official_layout(model, tmp_path):
    path = save_model_atomic(model, tmp_path / "models" / "model.pt")
    assert path == tmp_path / "models" / "model.pt"
    assert os.listdir(path.parent) == ["model.pt"]  # no temporary file left
    content = torch.load(path, map_location="cpu", weights_only=True)
    assert list(content) == ["model"]
    assert list(content["model"]) == list(model.state_dict())
    loaded = build_sam2_segmenter("tiny", image_size=256, checkpoint=path)  # strict, weights_only
    ref = model.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in loaded.state_dict().items())


def test_save_model_atomic_unwraps_module_and_replaces(tmp_path):
    net = torch.nn.Linear(3, 2)
    path = tmp_path / "net.pt"
    save_model_atomic(torch.nn.DataParallel(net), path)
    assert set(torch.load(path, weights_only=True)["model"]) == {"weight", "bias"}  # no "module." prefix
    with torch.no_grad():
        net.weight.fill_(7.0)
    save_model_atomic(net, path)  # overwrites
    assert torch.load(path, weights_only=True)["model"]["weight"].eq(7.0).all()
    assert os.listdir(tmp_path) == ["net.pt"]


def test_best_model_saver_saves_only_on_improvement(tmp_path):
    net = torch.nn.Linear(3, 2)
    path = tmp_path / "models" / "best.pt"
    scores = [0.5, 0.4, 0.7, 0.7, 0.69]
    saved_weight = []

    engine = Engine(lambda e, b: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def validate(e):  # the "validation" of epoch n gives scores[n - 1]; weights carry the epoch number
        with torch.no_grad():
            net.weight.fill_(float(e.state.epoch))
        e.state.metrics["val_mean_dice"] = scores[e.state.epoch - 1]

    saver = BestModelSaver(net, str(path), "val_mean_dice")
    saver.attach(engine)

    @engine.on(Events.EPOCH_COMPLETED)
    def look(e):
        saved_weight.append(
            float(torch.load(path, weights_only=True)["model"]["weight"][0, 0]) if path.exists() else None
        )

    engine.run([0], max_epochs=len(scores))
    assert saved_weight == [1.0, 1.0, 3.0, 3.0, 3.0]  # epochs 1 and 3 improved; ties do not save
    assert saver.best == 0.7
    assert os.listdir(path.parent) == ["best.pt"]
    fresh = torch.nn.Linear(3, 2)
    fresh.load_state_dict(torch.load(path, weights_only=True)["model"], strict=True)
    assert fresh.weight.eq(3.0).all()


def test_metrics_summary_writer_per_label_means(tmp_path):
    nan = float("nan")
    state = SimpleNamespace(
        metrics={"val_mean_dice": 0.55, "val_nsd": 0.45},
        metric_details={
            "val_mean_dice": torch.tensor([[0.8, 0.2], [0.6, nan], [1.0, 0.4]]),
            "val_nsd": torch.tensor([[0.5, 0.1], [0.7, 0.3], [0.9, nan]]),
        },
    )
    path = tmp_path / "eval" / "summary.json"
    writer = MetricsSummaryWriter(str(path), {"1": "liver", "2": "tumour"}, ["val_mean_dice", "val_nsd"])
    writer(SimpleNamespace(state=state))
    summary = json.loads(path.read_text())
    assert summary["num_cases"] == 3
    assert summary["val_mean_dice"] == pytest.approx(0.55) and summary["val_nsd"] == pytest.approx(0.45)
    assert summary["per_label"]["liver"] == pytest.approx({"val_mean_dice": 0.8, "val_nsd": 0.7})
    assert summary["per_label"]["tumour"] == pytest.approx({"val_mean_dice": 0.3, "val_nsd": 0.2})  # NaN skipped
    assert os.listdir(path.parent) == ["summary.json"]


def test_metrics_summary_writer_attached_runs_on_completed(tmp_path):
    engine = Engine(lambda e, b: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def metrics(e):
        e.state.metrics = {"dice": 0.5}
        e.state.metric_details = {"dice": [[0.25], [0.75]]}

    path = tmp_path / "s.json"
    MetricsSummaryWriter(str(path), ["lesion"], ["dice"]).attach(engine)
    engine.run([0], max_epochs=1)
    assert json.loads(path.read_text()) == {"num_cases": 2, "per_label": {"lesion": {"dice": 0.5}}, "dice": 0.5}
