"""The surgical_sam bundle: contract files, verify_metadata / verify_net_in_out, tiny trainings with
and without IBR (embedding cache, MLflow), EndoVis evaluation, video inference in both query modes,
bad inputs (mixed frame sizes, class ids outside the list, damaged cache entry)."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from conftest import REPO, error_chain
from PIL import Image

BUNDLE = REPO / "bundles" / "surgical_sam"
CONFIGS = BUNDLE / "configs"
TINY_NET = {"image_size": 64, "variant": "vit_b", "encoder_depth": 2, "encoder_embed_dim": 64, "encoder_num_heads": 2}


def configs(*names: str) -> list[str]:
    return [str(CONFIGS / n) for n in (*names, "tiny.json")]


def workflow(names: list[str], **overrides):
    from monai.bundle import ConfigWorkflow

    flow = ConfigWorkflow(
        config_file=configs(*names), logging_file=str(CONFIGS / "logging.conf"), workflow_type=None, **overrides
    )
    flow.initialize()
    flow.run()
    flow.finalize()
    return flow


@pytest.fixture(scope="module")
def surgical(tmp_path_factory) -> Path:
    """Synthetic surgical video frames: 4 sequences x 3 frames of 64 x 80 (3 training, 1 validation)."""
    from monaiseg.data.synthetic_surgical import make_synthetic_surgical_dataset

    return make_synthetic_surgical_dataset(
        tmp_path_factory.mktemp("surgical") / "data", sequences=4, frames=3, size=(64, 80), seed=1
    )


@pytest.fixture(scope="module")
def trained(surgical, tmp_path_factory) -> dict:
    """Two tiny trainings (2 iterations of 4 frames): IBR + embedding cache + MLflow, and no IBR / no cache."""
    roots = {}
    for name, switches in [
        ("ibr", {"tracking": "mlflow"}),
        ("no_ibr", {"use_ibr": "false", "use_embedding_cache": False}),
    ]:
        root = tmp_path_factory.mktemp(f"surgical_sam_{name}")
        flow = workflow(["train.json"], bundle_root=str(root), dataset_dir=str(surgical), **switches)
        roots[name] = (root, flow)
    return roots


def test_bundle_specific_contract():
    """What this bundle declares beyond the shared zoo checks (scripts/verify_bundles.py)."""
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert meta["supported_apps"] == {"monai-label": "segmentation"}
    channels = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert list(channels.values())[:2] == ["background", "bipolar_forceps"] and len(channels) == 8
    train = json.loads((CONFIGS / "train.json").read_text())
    assert list(train["labels"].values()) == list(channels.values())[1:]
    assert "Apache License" in (BUNDLE / "LICENSE").read_text()
    assert "sam_vit_h_4b8939.pth" in (BUNDLE / "large_files.yml").read_text()


@pytest.mark.slow
def test_training_saves_model_fills_cache_and_bank_and_tracks_mlflow(trained, surgical):
    from mlflow import MlflowClient

    from monaiseg.data.embedding_cache import EmbeddingCache
    from monaiseg.networks.surgical_sam import build_surgical_sam

    root, flow = trained["ibr"]
    content = torch.load(root / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert set(content) == {"model"} and "prototypes.class_embeddings.weight" in content["model"]
    model = build_surgical_sam(checkpoint=str(root / "models" / "model.pt"), **TINY_NET)  # strict load
    assert not torch.equal(
        model.prototypes.class_embeddings.weight,  # trained, not the initial prototypes
        build_surgical_sam(**TINY_NET).prototypes.class_embeddings.weight,
    )
    bank = flow.parser.get_parsed_content("image_bank")
    assert len(bank) >= 1 and all(1 <= c <= 7 for c in bank.slots)
    cache = flow.parser.get_parsed_content("embedding_cache")
    assert isinstance(cache, EmbeddingCache) and Path(cache.root) == root / "cache"
    assert len(cache) >= 3 and cache.size_bytes() > 0  # training frames (flipped versions) + validation frames
    reported = flow.parser.get_parsed_content("train#trainer").state.embedding_cache  # EmbeddingCacheLogger
    assert reported["entries"] >= 1 and reported["size_bytes"] > 0
    _, plain = trained["no_ibr"]
    assert plain.parser.get_parsed_content("image_bank") is None
    assert plain.parser.get_parsed_content("embedding_cache") is None
    client = MlflowClient(tracking_uri=f"sqlite:///{root / 'eval' / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1
    run = runs[0]
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in losses] == [1, 2] and all(np.isfinite(m.value) for m in losses)
    assert 0.0 <= run.data.metrics["challenge_iou"] <= 1.0 and "mciou" in run.data.metrics
    assert run.data.params["params_trainable"] != run.data.params["params_total"]
    assert "model.pt" in {a.path for a in client.list_artifacts(run.info.run_id)}


def evaluate(root: Path, surgical: Path, out: Path, **overrides) -> dict:
    workflow(
        ["train.json", "evaluate.json"],
        bundle_root=str(root),
        dataset_dir=str(surgical),
        output_dir=str(out),
        **overrides,
    )
    return json.loads((out / "summary.json").read_text())


@pytest.mark.slow
def test_evaluate_writes_per_frame_and_summary_metrics_with_and_without_ibr(trained, surgical, tmp_path):
    from monaiseg.metrics.endovis import EndoVisIoU

    validation = json.loads((surgical / "datalist.json").read_text())["validation"]
    for name in ("ibr", "no_ibr"):
        root, _ = trained[name]
        summary = evaluate(root, surgical, tmp_path / name, use_embedding_cache=name == "ibr")
        assert summary["num_frames"] == len(validation) and len(summary["per_class_iou"]) == 7
        with open(tmp_path / name / "per_frame.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert [Path(r["frame"]).name for r in rows] == [Path(v["image"]).name for v in validation]
        assert list(rows[0])[:4] == ["frame", "challenge_iou", "iou", "iou_bipolar_forceps"]
        for key in ("challenge_iou", "iou", "mciou"):
            assert summary[key] is None or 0.0 <= summary[key] <= 1.0
    # "all" mode of the same model: recomputed by hand from the network's class maps
    from monaiseg.inferers.class_prompt import ClassPromptInferer
    from monaiseg.networks.surgical_sam import build_surgical_sam

    root, _ = trained["ibr"]
    summary = evaluate(root, surgical, tmp_path / "all", query_mode="all", min_prob=0.6)
    model = build_surgical_sam(checkpoint=str(root / "models" / "model.pt"), **TINY_NET)
    inferer = ClassPromptInferer("all", min_prob=0.6)
    expected = EndoVisIoU(7)
    for item in validation:
        image = torch.from_numpy(np.asarray(Image.open(surgical / item["image"]))).permute(2, 0, 1)[None] / 255.0
        pred = inferer(image, model)[0, 0].numpy().astype(np.int64)
        expected.update(pred, np.asarray(Image.open(surgical / item["label"])).astype(np.int64))
    result = expected.aggregate()
    for key in ("challenge_iou", "iou", "mciou"):
        expected_value = None if np.isnan(result[key]) else pytest.approx(float(result[key]), abs=1e-6)
        assert summary[key] == expected_value


def write_video(frames_dir: Path, mp4: Path) -> None:
    """The PNG frames of `frames_dir` as an MP4 (mp4v, 5 fps)."""
    frames = sorted(frames_dir.glob("*.png"))
    first = cv2.imread(str(frames[0]))
    writer = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), 5, (first.shape[1], first.shape[0]))
    for f in frames:
        writer.write(cv2.imread(str(f)))
    writer.release()


@pytest.mark.slow
def test_inference_on_frame_folder_and_mp4_writes_class_masks_of_input_size(trained, surgical, tmp_path):
    from monaiseg.inferers.class_prompt import ClassPromptInferer
    from monaiseg.networks.surgical_sam import build_surgical_sam

    root, _ = trained["ibr"]
    folder = surgical / "frames" / "seq_4"
    mp4 = tmp_path / "clip.mp4"
    write_video(folder, mp4)
    videos = tmp_path / "videos.json"
    videos.write_text(json.dumps({"testing": [{"image": str(folder)}, {"image": str(mp4)}]}))
    out = tmp_path / "out"
    workflow(["inference.json"], bundle_root=str(root), datalist=str(videos), output_dir=str(out), min_prob=0.6)
    names = sorted(p.stem for p in folder.glob("*.png"))
    assert sorted(p.stem for p in (out / "seq_4").glob("*.png")) == names
    assert sorted(p.name for p in (out / "clip").glob("*.png")) == [f"{i:05d}.png" for i in range(3)]
    model = build_surgical_sam(checkpoint=str(root / "models" / "model.pt"), **TINY_NET)
    for name in names:
        written = np.asarray(Image.open(out / "seq_4" / f"{name}.png"))
        image = torch.from_numpy(np.asarray(Image.open(folder / f"{name}.png"))).permute(2, 0, 1)[None] / 255.0
        expected = ClassPromptInferer("all", min_prob=0.6)(image, model)[0, 0].numpy()
        assert written.shape == (64, 80) and written.dtype == np.uint8 and np.array_equal(written, expected)
    # "gt" mode: only classes of the ground-truth masks
    labelled = tmp_path / "labelled.json"
    labelled.write_text(json.dumps({"testing": [{"image": str(folder), "label": str(surgical / "masks" / "seq_4")}]}))
    workflow(
        ["inference.json"],
        bundle_root=str(root),
        datalist=str(labelled),
        output_dir=str(tmp_path / "gt"),
        query_mode="gt",
    )
    for name in names:
        gt_classes = set(np.unique(np.asarray(Image.open(surgical / "masks" / "seq_4" / f"{name}.png"))))
        assert set(np.unique(np.asarray(Image.open(tmp_path / "gt" / "seq_4" / f"{name}.png")))) <= gt_classes | {0}


@pytest.mark.slow
def test_inference_refuses_mixed_frame_sizes_and_gt_mode_without_labels(trained, surgical, tmp_path):
    root, _ = trained["ibr"]
    folder = tmp_path / "mixed"
    shutil.copytree(surgical / "frames" / "seq_4", folder)
    Image.open(folder / "00001.png").resize((72, 64)).save(folder / "00001.png")
    out = tmp_path / "out"
    with pytest.raises(Exception) as info:
        workflow(["inference.json"], bundle_root=str(root), input_video=str(folder), output_dir=str(out))
    message = error_chain(info.value)
    assert str(folder) in message and "frames have different sizes" in message
    assert not out.exists() or not any(out.iterdir())
    with pytest.raises(Exception) as info:
        workflow(
            ["inference.json"],
            bundle_root=str(root),
            input_video=str(surgical / "frames" / "seq_4"),
            output_dir=str(out),
            query_mode="gt",
        )
    assert "query_mode 'gt'" in error_chain(info.value) and not (out / "seq_4").exists()


@pytest.mark.slow
def test_training_refuses_class_ids_outside_the_class_list(surgical, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(surgical, data)
    bad = data / json.loads((data / "datalist.json").read_text())["training"][0]["label"]
    mask = np.asarray(Image.open(bad)).copy()
    mask[:3, :3] = 9
    Image.fromarray(mask).save(bad)
    root = tmp_path / "root"
    with pytest.raises(Exception) as info:
        workflow(["train.json"], bundle_root=str(root), dataset_dir=str(data), use_embedding_cache=False)
    message = error_chain(info.value)
    assert str(bad) in message and "mask values [9]" in message
    assert not (root / "models" / "model.pt").exists()


@pytest.mark.slow
def test_damaged_cache_entry_is_recomputed_not_used(trained, surgical, tmp_path):
    root, _ = trained["ibr"]
    before = evaluate(root, surgical, tmp_path / "before")
    entries = sorted((root / "cache").glob("??/*.pt"))
    for entry in entries:
        entry.write_bytes(entry.read_bytes()[:100])  # truncated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        after = evaluate(root, surgical, tmp_path / "after")
    damaged = [str(w.message) for w in caught if "embedding cache entry" in str(w.message)]
    assert damaged and any(str(e) in m for e in entries for m in damaged)
    assert after == before  # recomputed features, same numbers


@pytest.mark.slow
def test_missing_foundation_checkpoint_names_the_fix(surgical, tmp_path):
    missing = tmp_path / "models" / "sam_vit_h_4b8939.pth"
    with pytest.raises(Exception) as info:
        workflow(
            ["train.json"], bundle_root=str(tmp_path), dataset_dir=str(surgical), foundation_checkpoint=str(missing)
        )
    message = error_chain(info.value)
    assert str(missing) in message and "download_large_files" in message
    assert not (tmp_path / "models" / "model.pt").exists()
