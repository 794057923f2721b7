"""`ValidationOverlays`: pictures of the first validation cases per epoch, as files and MLflow artifacts."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import cv2
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from monai.handlers import MLFlowHandler

from monaiseg.handlers import ValidationOverlays, check_writable


def fake_tracker() -> MLFlowHandler:
    """An MLFlowHandler with a run, whose client records `log_artifact` calls (no MLflow store)."""
    tracker = MLFlowHandler.__new__(MLFlowHandler)
    logged: list[tuple] = []
    tracker.client = SimpleNamespace(logged=logged, log_artifact=lambda *args: logged.append(args))
    tracker.cur_run = SimpleNamespace(info=SimpleNamespace(run_id="run0"))
    return tracker


def segmentation_case(name: str, shape=(32, 24), channels: int = 1) -> dict:
    label = torch.zeros(1, *shape)
    label[0, 4:12, 6:14] = 1
    pred = torch.roll(label, 2, dims=1)
    image = MetaTensor(torch.rand(channels, *shape), meta={"filename_or_obj": f"/data/{name}.nii.gz"})
    onehot = lambda x: torch.cat([1 - x, x])  # noqa: E731
    return {"image": image, "pred": onehot(pred), "label": onehot(label)}


def run_epochs(handler, iterations: list[list[dict]], epochs: int = 1) -> Engine:
    engine = Engine(lambda e, batch: batch)  # the "evaluator": its output is the batch of output items
    handler.attach(engine)
    engine.run(iterations, max_epochs=epochs)
    return engine


def test_first_cases_of_each_epoch_become_pngs_in_the_folder_and_the_mlflow_run(tmp_path):
    tracker = fake_tracker()
    handler = ValidationOverlays(tmp_path, interval=1, num_cases=3, mlflow_handlers=[object(), tracker], size=64)
    cases = [[segmentation_case("a"), segmentation_case("b")], [segmentation_case("c"), segmentation_case("d")]]
    run_epochs(handler, cases, epochs=2)
    for epoch in ("epoch_001", "epoch_002"):
        files = sorted(p.name for p in (tmp_path / "overlays" / epoch).iterdir())
        assert files == ["a.png", "b.png", "c.png"]  # the first num_cases, the same set every epoch
    png = cv2.imread(str(tmp_path / "overlays" / "epoch_001" / "a.png"))
    assert png.shape[1] == 64 + 2 and png.shape[0] > 64  # tile scaled to `size`, title bar on top
    assert [(a[0], a[2]) for a in tracker.client.logged] == [("run0", "overlays/epoch_001")] * 3 + [
        ("run0", "overlays/epoch_002")
    ] * 3
    assert handler.stopwatch.seconds > 0


def test_volumes_show_their_key_slice_and_videos_a_strip_of_frames(tmp_path):
    volume = [[segmentation_case("vol", shape=(20, 16, 6))]]
    run_epochs(ValidationOverlays(tmp_path / "v", num_cases=1, size=40), volume)
    video = [[segmentation_case("clip", shape=(20, 16, 6), channels=3)]]
    run_epochs(ValidationOverlays(tmp_path / "c", num_cases=1, frames=4, size=40), video)
    one = cv2.imread(str(tmp_path / "v" / "overlays" / "epoch_001" / "vol.png"))
    strip = cv2.imread(str(tmp_path / "c" / "overlays" / "epoch_001" / "clip.png"))
    assert one.shape[1] == 42 and strip.shape[1] == 4 * 42  # one tile / four frames side by side


def test_only_every_interval_th_epoch_and_never_when_off(tmp_path):
    run_epochs(ValidationOverlays(tmp_path / "a", interval=2), [[segmentation_case("a")]], epochs=3)
    assert sorted(p.name for p in (tmp_path / "a" / "overlays").iterdir()) == ["epoch_002"]
    run_epochs(ValidationOverlays(tmp_path / "b", interval=0), [[segmentation_case("a")]])
    assert not (tmp_path / "b").exists()  # off: not even the folder


def test_a_case_that_cannot_be_drawn_is_skipped_with_its_reason(tmp_path, caplog):
    flat = segmentation_case("flat")
    flat["image"] = MetaTensor(torch.rand(1, 32), meta={"filename_or_obj": "flat.png"})  # one spatial dim
    empty = segmentation_case("empty")
    empty["image"] = MetaTensor(torch.zeros(1, 0, 24), meta={"filename_or_obj": "empty.png"})
    nan = segmentation_case("nan")
    nan["image"][:] = float("nan")
    with caplog.at_level(logging.WARNING):
        run_epochs(ValidationOverlays(tmp_path, num_cases=2), [[flat, empty, nan, segmentation_case("ok")]])
    assert sorted(p.name for p in (tmp_path / "overlays" / "epoch_001").iterdir()) == ["ok.png"]
    skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
    assert len(skipped) == 3 and "flat" in skipped[0] and "NaN" in skipped[2], skipped


def test_classification_logs_the_confusion_matrix_of_all_cases(tmp_path):
    tracker = fake_tracker()
    cases = [
        {"image": torch.rand(3, 16, 16), "pred": torch.tensor([2.0, 0.0, 0.0]), "label": torch.tensor(0)},
        {"image": torch.rand(3, 16, 16), "pred": torch.tensor([0.0, 0.0, 3.0]), "label": torch.tensor(1)},
    ]
    handler = ValidationOverlays(tmp_path, class_names=["a", "b", "c"], mlflow_handlers=[tracker])
    run_epochs(handler, [cases])
    assert handler.confusion.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0]]
    assert [p.name for p in (tmp_path / "overlays" / "epoch_001").iterdir()] == ["confusion_matrix.png"]
    assert tracker.client.logged[0][1].endswith("epoch_001/confusion_matrix.png")


def test_an_unwritable_output_folder_is_one_clear_error_when_the_handler_is_made(tmp_path):
    blocker = tmp_path / "eval"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(OSError, match="cannot write to the output folder"):
        ValidationOverlays(blocker / "run")
    ValidationOverlays(blocker / "run", interval=0)  # off: nothing is written, nothing is checked
    assert check_writable(tmp_path / "new" / "folder").is_dir()
    assert not list((tmp_path / "new" / "folder").iterdir())
