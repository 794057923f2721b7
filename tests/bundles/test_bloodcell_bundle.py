"""The bloodcell_sam2 bundle end to end: contract checks, both training stages, evaluation
(Tables 1/2 and tracking), inference on images and videos, ablations, bad input, real WBC data."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO, SHARED, error_chain
from PIL import Image

from monaiseg.utils.bundle_run import run_bundle

from .bundle_training import run_torchrun

BUNDLE = REPO / "bundles" / "bloodcell_sam2"
CONFIGS = BUNDLE / "configs"
WBC = SHARED / "data" / "wbc_cellavision"
TRAIN = ["train.json"]
VIDEO = ["train.json", "train_video.json"]


def run(configs: list[str], root: Path, **overrides) -> None:
    """The bundle's workflow in this process with the tiny override, models/eval under `root`."""
    files = [CONFIGS / c for c in [*configs, "tiny.json"]]
    paths = {"bundle_root": BUNDLE, "ckpt_dir": root / "models", "output_dir": root / "eval"}
    run_bundle(files, in_process=True, **{**paths, **overrides})


def expect_error(configs: list[str], root: Path, words: list[str], **overrides) -> None:
    """The run fails with every one of `words` in its error chain."""
    with pytest.raises(Exception) as failure:
        run(configs, root, **overrides)
    message = error_chain(failure.value)
    assert all(w in message for w in words), message


@pytest.fixture(scope="module")
def trained(synthetic_cells, tmp_path_factory):
    """Stage 1 (images, MLflow tracked) then stage 2 (videos) on synthetic data; returns the root."""
    root = tmp_path_factory.mktemp("bloodcell")
    run(TRAIN, root, dataset_dir=synthetic_cells, tracking="mlflow", tracking_uri=f"sqlite:///{root}/mlflow.db")
    run(VIDEO, root, dataset_dir=synthetic_cells)
    return root


def test_ablations_are_one_switch_each():
    names = sorted(p.stem for p in (CONFIGS / "ablations").glob("*.json"))
    assert [n.split("_")[0] for n in names] == [f"abl{i}" for i in range(1, 8)]
    train = json.loads((CONFIGS / "train.json").read_text()) | json.loads((CONFIGS / "train_video.json").read_text())
    for name in names:
        override = json.loads((CONFIGS / "ablations" / f"{name}.json").read_text())
        assert override.pop("ablation").startswith(f"Abl-{name[3]}")
        assert set(override) <= set(train), f"{name} sets keys the bundle does not have: {set(override) - set(train)}"


@pytest.mark.slow
def test_two_stage_training_checkpoints(trained):
    from monaiseg.networks import build_peft_sam2, is_peft_key

    models = trained / "models"
    stage1 = torch.load(models / "model_stage1.pt", weights_only=True)["model"]
    final = torch.load(models / "model.pt", weights_only=True)["model"]
    peft = torch.load(models / "model_peft.pt", weights_only=True)["model"]
    assert peft and all(is_peft_key(k) for k in peft)
    assert set(stage1) == set(final)
    changed = {k for k in final if not torch.equal(final[k], stage1[k])}
    assert any(k.startswith("memory_encoder.") for k in changed), "stage 2 trains the memory encoder"
    frozen = [k for k in changed if not (k.startswith("memory_encoder.") or is_peft_key(k))]
    assert not frozen, f"frozen weights changed in stage 2: {frozen[:5]}"
    assert all(torch.equal(final[k], peft[k]) for k in peft), "adapter-only file = the PEFT part of the final model"
    model = build_peft_sam2(
        "tiny", 128, checkpoint=str(models / "model.pt"), lora_rank=16, lora_alpha=32
    )  # strict load
    assert torch.equal(
        model.state_dict()["memory_encoder.fuser.layers.0.dwconv.weight"],
        final["memory_encoder.fuser.layers.0.dwconv.weight"],
    )


@pytest.mark.slow
def test_training_is_tracked_in_mlflow(trained):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{trained}/mlflow.db")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert runs
    run = runs[0]
    assert 0 < float(run.data.params["params_trainable_percent"]) < 5
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 2
    assert "val_mean_dice" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"model.pt", "model_peft.pt"} <= artifacts


@pytest.mark.slow
def test_evaluate_writes_tables(trained, synthetic_cells):
    run(["train.json", "evaluate.json"], trained, dataset_dir=synthetic_cells)
    summary = json.loads((trained / "eval" / "summary.json").read_text())
    for metric in ("val_mean_dice", "val_mean_iou", "val_boundary_f1"):
        assert 0 <= summary[metric] <= 1
    testing = json.loads((synthetic_cells / "datalist.json").read_text())["testing"]
    assert summary["num_images"] == len(testing) and summary["fps"] > 0
    assert summary["parameters"]["total"] > summary["parameters"]["trainable"] > 0
    names = {
        json.loads((synthetic_cells / "datalist.json").read_text())["cell_types"][str(i["cell_type"])] for i in testing
    }
    assert names | {"macro"} == set(summary["per_cell_type"])
    assert (trained / "eval" / "cell_types.csv").read_text().splitlines()[0].startswith("cell_type,")
    assert len((trained / "eval" / "val_mean_dice_raw.csv").read_text().splitlines()) == len(testing) + 1

    run(["train.json", "train_video.json", "evaluate_video.json"], trained, dataset_dir=synthetic_cells)
    tracking = json.loads((trained / "eval" / "tracking.json").read_text())
    videos = json.loads((synthetic_cells / "datalist.json").read_text())["testing_videos"]
    assert tracking["num_videos"] == len(videos) and 0 <= tracking["mean_tra"] <= 1
    name = Path(videos[0]["image"]).name
    masks = sorted((trained / "eval" / "tracking" / f"{name}_RES").glob("mask*.tif"))
    assert len(masks) == 6 and (trained / "eval" / "tracking" / f"{name}_RES" / "res_track.txt").is_file()


@pytest.mark.slow
def test_inference_images_with_boxes_and_overlays(trained, synthetic_cells, tmp_path):
    image = synthetic_cells / "images" / "smear_000.png"
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([[10, 20, 60, 70], [70, 70, 120, 110]]))
    out = tmp_path / "out"
    checkpoint = trained / "models" / "model.pt"
    run(
        ["inference.json"],
        trained,
        input_image=image,
        input_boxes=boxes,
        save_overlays="true",
        output_dir=out,
        checkpoint=checkpoint,
    )
    pred = np.asarray(Image.open(out / "smear_000_cells.png"))
    assert pred.shape == np.asarray(Image.open(image)).shape[:2]
    assert set(np.unique(pred)) <= {0, 1, 2}
    assert (out / "smear_000_overlay.png").is_file()


@pytest.mark.slow
def test_inference_video_keeps_cell_ids(trained, synthetic_cells, tmp_path):
    from monaiseg.data.ctc import read_ctc_frames

    out = tmp_path / "out"
    video = synthetic_cells / "videos" / "01"
    checkpoint = trained / "models" / "model.pt"
    run(["inference.json", "inference_video.json"], trained, input_video=video, output_dir=out, checkpoint=checkpoint)
    masks = [np.asarray(Image.open(p)) for p in sorted((out / "01_RES").glob("mask*.tif"))]
    assert len(masks) == 6 and masks[0].shape == read_ctc_frames(video).shape[1:3]
    track_lines = (out / "01_RES" / "res_track.txt").read_text().split("\n")
    ids = {int(line.split()[0]) for line in track_lines if line.strip()}
    assert ids == set(np.unique(np.stack(masks))) - {0}, "every id in the masks is a track of res_track.txt"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["RGBA", "I;16"])
def test_inference_refuses_bad_images_without_outputs(trained, tmp_path, mode):
    image = tmp_path / f"bad_{mode.replace(';', '')}.png"
    if mode == "RGBA":
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 4), dtype=np.uint8), "RGBA").save(image)
    else:
        Image.fromarray(np.random.default_rng(0).integers(0, 60000, (64, 64)).astype(np.uint16)).save(image)
    out = tmp_path / "out"
    problem = "4 channels" if mode == "RGBA" else "bit depth"
    checkpoint = trained / "models" / "model.pt"
    expect_error(
        ["inference.json"], trained, [str(image), problem], input_image=image, output_dir=out, checkpoint=checkpoint
    )
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_inference_refuses_box_outside_image(trained, synthetic_cells, tmp_path):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([[10, 20, 600, 70]]))
    image = synthetic_cells / "images" / "smear_000.png"
    expect_error(
        ["inference.json"],
        trained,
        [str(boxes), "outside"],
        input_image=image,
        input_boxes=boxes,
        output_dir=tmp_path / "out",
    )
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_ablation_script_writes_table4(synthetic_cells, tmp_path):
    out = tmp_path / "ablations"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "run_ablations.py"),
            "--dataset",
            str(synthetic_cells),
            "--out",
            str(out),
            "--ablations",
            "abl4_end_to_end",
            "abl7_zero_shot",
            "--override",
            "configs/tiny.json",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "table4.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == [
            "ablation",
            "description",
            "trainable_percent",
            "mdice",
            "tra",
            "boundary_f1",
            "training_time_s",
        ]
        end_to_end, zero_shot = list(reader)
    assert end_to_end["ablation"] == "abl4_end_to_end" and zero_shot["ablation"] == "abl7_zero_shot"
    assert float(end_to_end["trainable_percent"]) > 0 and float(end_to_end["training_time_s"]) > 0
    assert float(zero_shot["trainable_percent"]) == 0 and float(zero_shot["training_time_s"]) < 1
    assert "| Abl-7" in (out / "table4.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(not WBC.exists(), reason="real WBC sample data (../shared/data) not present")
def test_real_wbc_images(tmp_path):
    from monaiseg.data.cells import prepare_wbc

    dataset = tmp_path / "wbc"
    prepare_wbc(WBC, dataset)
    run(TRAIN, tmp_path, dataset_dir=dataset, video_data_keys=[])
    run(["train.json", "evaluate.json"], tmp_path, dataset_dir=dataset)
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["num_images"] == 15 and 0 <= summary["val_mean_dice"] <= 1
    assert set(summary["per_cell_type"]) - {"macro"} <= {
        "neutrophil",
        "lymphocyte",
        "monocyte",
        "eosinophil",
        "basophil",
    }


@pytest.mark.slow
def test_torchrun_stage2_videos(trained, synthetic_cells, tmp_path):
    """Stage 2 (videos) under torchrun (gloo on CPU): rank 0 alone logs and saves (stage 1: the
    parametrised torchrun test of tests/bundles/test_bundles_conformance.py)."""
    import shutil

    shutil.copytree(trained / "models", tmp_path / "models")  # stage 2 starts from stage 1's checkpoint
    stamp = (tmp_path / "models" / "model.pt").stat().st_mtime_ns
    files = [str(CONFIGS / c) for c in [*VIDEO, "multi_gpu_train.json", "tiny.json"]]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(files),
        "--bundle_root",
        str(BUNDLE),
        "--ckpt_dir",
        str(tmp_path / "models"),
        "--output_dir",
        str(tmp_path / "eval"),
        "--dataset_dir",
        str(synthetic_cells),
        "--logging_file",
        str(CONFIGS / "logging.conf"),
    ]
    proc = run_torchrun(cmd, cwd=BUNDLE)
    assert proc.returncode == 0, proc.stderr[-5000:]
    log = proc.stdout + proc.stderr
    assert log.count("train_loss:") == 2  # StatsHandler on rank 0 only: 2 iterations
    assert (tmp_path / "models" / "model.pt").stat().st_mtime_ns > stamp
