"""The medsam2 bundle end to end: contract checks and train / evaluate / inference runs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import MEDSAM2, SHARED

from monaiseg.utils import bundle_run

CONFIGS = MEDSAM2 / "configs"
LABELS = [1, 2, 3, 5, 13]


def run_bundle(config_files: list[str], **overrides):
    bundle_run.run_bundle([str(CONFIGS / n) for n in config_files], in_process=True, **overrides)


@pytest.fixture(scope="module")
def trained(synthetic_ct, tmp_path_factory):
    """One tiny training through the CLI with MLflow tracking; returns the bundle root used."""
    root = tmp_path_factory.mktemp("medsam2_root")
    files = [CONFIGS / "train.json", CONFIGS / "tiny.json"]
    bundle_run.run_bundle(files, cwd=root, timeout=600, bundle_root=root, dataset_dir=synthetic_ct, tracking="mlflow")
    return root


@pytest.mark.slow
def test_train_saves_official_layout_and_tracks_mlflow(trained):
    from mlflow import MlflowClient

    from monaiseg.networks import build_sam2_segmenter

    model_file = trained / "models" / "model.pt"
    content = torch.load(model_file, map_location="cpu", weights_only=True)
    assert set(content) == {"model"}
    build_sam2_segmenter("tiny", 256, checkpoint=model_file)  # strict load: official sam2 key layout
    db = trained / "eval" / "mlflow.db"
    assert db.exists()
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1
    run = runs[0]
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in losses] == [1, 2] and all(np.isfinite(m.value) for m in losses)
    assert 0.0 <= run.data.metrics["val_mean_dice"] <= 1.0
    assert run.data.params["max_epochs"] == "1"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "model.pt" in artifacts and any(a.startswith("config_") for a in artifacts)


@pytest.mark.slow
def test_evaluate_writes_per_case_and_summary(trained, synthetic_ct):
    out = trained / "evaluation"
    run_bundle(
        ["train.json", "evaluate.json", "tiny.json"],
        bundle_root=str(trained),
        dataset_dir=str(synthetic_ct),
        output_dir=str(out),
    )
    with open(out / "val_mean_nsd_raw.csv") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["filename", "class0", "class1", "class2", "class3", "class4", "mean"]
    assert len(rows) == 3  # two test cases
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_cases"] == 2
    assert set(summary["per_label"]) == {"liver", "right kidney", "spleen", "aorta", "left kidney"}
    for metric in ("val_mean_dice", "val_mean_nsd"):
        assert 0.0 <= summary[metric] <= 1.0
        assert summary[metric] == pytest.approx(np.mean([v[metric] for v in summary["per_label"].values()]), abs=1e-5)


def write_prompts(path: Path, objects: list[dict]) -> Path:
    path.write_text(json.dumps({"objects": objects}))
    return path


@pytest.mark.slow
def test_inference_json_prompts_keeps_geometry(trained, synthetic_ct, tmp_path):
    image = next((synthetic_ct / "imagesTr").glob("*.nii.gz"))
    prompts = write_prompts(
        tmp_path / "p.json",
        [
            {"label": 2, "slice": 8, "box": [5, 6, 30, 40]},
            {"label": 7, "slice": 3, "points": [[20, 20]], "point_labels": [1]},
        ],
    )
    run_bundle(
        ["inference.json", "tiny.json"],
        bundle_root=str(trained),
        input_image=str(image),
        input_prompts=str(prompts),
        output_dir=str(tmp_path / "out"),
    )
    out = nib.load(tmp_path / "out" / image.name.replace(".nii.gz", "_seg.nii.gz"))
    src = nib.load(image)
    assert out.shape == src.shape and np.allclose(out.affine, src.affine)
    assert set(np.unique(np.asarray(out.dataobj))) <= {0, 2, 7}


@pytest.mark.slow
def test_inference_prompts_from_label_and_nrrd(trained, synthetic_ct, tmp_path):
    import itk

    image = next((synthetic_ct / "imagesTr").glob("*.nii.gz"))
    label = synthetic_ct / "labelsTr" / image.name
    nrrd = tmp_path / "ct.nrrd"
    itk.imwrite(itk.imread(str(image)), str(nrrd))
    run_bundle(
        ["inference.json", "tiny.json"],
        bundle_root=str(trained),
        input_image=str(nrrd),
        input_label=str(label),
        prompt_labels=[1, 3],
        largest_component=True,
        output_dir=str(tmp_path / "out"),
    )
    out = itk.imread(str(tmp_path / "out" / "ct_seg.nii.gz"))
    src = itk.imread(str(nrrd))
    assert tuple(out.GetLargestPossibleRegion().GetSize()) == tuple(src.GetLargestPossibleRegion().GetSize())
    assert np.allclose(out.GetSpacing(), src.GetSpacing()) and np.allclose(out.GetOrigin(), src.GetOrigin())
    assert set(np.unique(itk.array_view_from_image(out))) <= {0, 1, 3}


@pytest.mark.slow
def test_inference_video_writes_mask_frames(trained, tmp_path):
    import cv2

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (40, 32))
    for t in range(6):
        frame = np.zeros((32, 40, 3), np.uint8)
        frame[8:20, 10 + t : 24 + t] = 220
        writer.write(frame)
    writer.release()
    prompts = write_prompts(tmp_path / "p.json", [{"label": 1, "frame": 2, "box": [12, 8, 25, 19]}])
    run_bundle(
        ["inference.json", "inference_video.json", "tiny.json"],
        bundle_root=str(trained),
        input_image=str(video),
        input_prompts=str(prompts),
        output_dir=str(tmp_path / "out"),
    )
    frames = sorted((tmp_path / "out" / "clip").glob("*.png"))
    assert [f.stem for f in frames] == [f"{t:05d}" for t in range(6)]
    mask = cv2.imread(str(frames[0]), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (32, 40) and set(np.unique(mask)) <= {0, 1}


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "data" / "deeplesion_ct").exists(), reason="../shared/data/deeplesion_ct not present")
def test_deeplesion_sample_through_inference(trained, tmp_path):
    from monaiseg.data import deeplesion_npz_to_nifti

    npz = sorted((SHARED / "data" / "deeplesion_ct").glob("*.npz"))[0]
    image, label = deeplesion_npz_to_nifti(npz, tmp_path / "nifti")
    # the npz is already windowed to uint8: map [0, 255] to [0, 1] with a window of level 127.5 / width 255
    run_bundle(
        ["inference.json", "tiny.json"],
        bundle_root=str(trained),
        input_image=str(image),
        input_label=str(label),
        window_level=127.5,
        window_width=255,
        output_dir=str(tmp_path / "out"),
    )
    out = nib.load(next((tmp_path / "out").glob("*_seg.nii.gz")))
    assert out.shape == nib.load(image).shape and np.allclose(out.affine, nib.load(image).affine)


@pytest.mark.slow
def test_inference_on_a_dicom_series(trained, tmp_path):
    import itk
    from monai.transforms import LoadImage

    series = tmp_path / "series"
    series.mkdir()
    array = np.random.default_rng(0).normal(40, 100, (6, 20, 24)).astype(np.int16)  # (z, y, x)
    image = itk.image_from_array(array)
    image.SetSpacing((0.8, 0.7, 2.5))
    writer = itk.ImageSeriesWriter[type(image), itk.Image[itk.SS, 2]].New(
        Input=image, FileNames=[str(series / f"IM{k:04d}.dcm") for k in range(6)], ImageIO=itk.GDCMImageIO.New()
    )
    writer.Update()
    prompts = write_prompts(tmp_path / "p.json", [{"label": 4, "slice": 3, "box": [2, 2, 15, 12]}])
    run_bundle(
        ["inference.json", "tiny.json"],
        bundle_root=str(trained),
        input_image=str(series),
        input_prompts=str(prompts),
        output_dir=str(tmp_path / "out"),
    )
    out = nib.load(next((tmp_path / "out").glob("*_seg.nii.gz")))
    src = LoadImage(image_only=True)(str(series))
    assert out.shape == tuple(src.shape) == (24, 20, 6)
    assert np.allclose(out.affine, src.affine.numpy())
    assert set(np.unique(np.asarray(out.dataobj))) <= {0, 4}


@pytest.mark.slow
def test_inference_with_the_mr_override(trained, tmp_path):
    volume = np.zeros((32, 32, 8), np.float32)
    volume[4:28, 4:28] = np.random.default_rng(0).gamma(2.0, 300.0, (24, 24, 8))  # MR-like, zero background
    image = tmp_path / "mr.nii.gz"
    nib.save(nib.Nifti1Image(volume, np.eye(4)), image)
    prompts = write_prompts(tmp_path / "p.json", [{"label": 1, "slice": 4, "box": [8, 8, 20, 20]}])
    run_bundle(
        ["inference.json", "mr.json", "tiny.json"],
        bundle_root=str(trained),
        input_image=str(image),
        input_prompts=str(prompts),
        output_dir=str(tmp_path / "out"),
    )
    out = nib.load(tmp_path / "out" / "mr_seg.nii.gz")
    assert out.shape == (32, 32, 8) and set(np.unique(np.asarray(out.dataobj))) <= {0, 1}
