"""The hf_sam bundle: contract files, verify_metadata / verify_net_in_out, tiny few-shot training
(MLflow), volume-wise evaluation (Dice / HD95 per organ), NIfTI inference, bad inputs."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import REPO, error_chain

from monaiseg.utils import bundle_run

BUNDLE = REPO / "bundles" / "hf_sam"
CONFIGS = BUNDLE / "configs"
TINY_NET = {"image_size": 64, "encoder_depth": 2, "encoder_embed_dim": 64, "encoder_num_heads": 2}


def configs(*names: str) -> list[str]:
    return [str(CONFIGS / n) for n in (*names, "tiny.json")]


def run_bundle(names: list[str], **overrides):
    bundle_run.run_bundle(configs(*names), in_process=True, **overrides)


@pytest.fixture(scope="module")
def organs(tmp_path_factory) -> Path:
    """Synthetic Synapse-like data: 2 training volumes as 16 slices, 2 test volumes (64 x 64 x 8)."""
    from monaiseg.data.synthetic_organs import make_synthetic_organs_dataset

    root = tmp_path_factory.mktemp("hf_sam_data") / "synapse"
    make_synthetic_organs_dataset(root, "synapse", train_cases=2, test_cases=2, shape=(64, 64, 8), seed=4)
    return root


@pytest.fixture(scope="module")
def trained(organs, tmp_path_factory) -> Path:
    """One tiny few-shot training with MLflow tracking (in-process `monai.bundle run`); returns the bundle root."""
    root = tmp_path_factory.mktemp("hf_sam_root")
    run_bundle(["train.json"], bundle_root=str(root), dataset_dir=str(organs), tracking="mlflow")
    return root


def test_bundle_specific_contract():
    """What this bundle declares beyond the shared zoo checks (scripts/verify_bundles.py)."""
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert meta["supported_apps"] == {"monai-label": "segmentation"}
    from monaiseg.data.synapse import SYNAPSE_LABELS

    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"] == {
        str(k): v for k, v in SYNAPSE_LABELS.items()
    }
    assert "models/sam_vit_b_01ec64.pth" in (BUNDLE / "large_files.yml").read_text()


def test_classes_follow_the_dataset_switch(organs, tmp_path):
    from monai.bundle import ConfigParser

    from monaiseg.data.acdc import ACDC_LABELS

    parser = ConfigParser()
    parser.read_config(configs("inference.json"))
    parser.update({"dataset": "acdc", "dataset_dir": str(tmp_path)})  # no datalist: the dataset's classes
    assert parser.get_parsed_content("labels") == ACDC_LABELS and parser.get_parsed_content("num_classes") == 3
    parser.update({"dataset_dir": str(organs)})  # a datalist: its "labels"
    assert parser.get_parsed_content("num_classes") == 8


def test_few_shot_selection_is_deterministic_and_order_free(organs, tmp_path):
    from monai.bundle import ConfigParser

    shuffled = tmp_path / "shuffled"
    shutil.copytree(organs, shuffled)
    datalist = json.loads((shuffled / "datalist.json").read_text())
    datalist["training"] = datalist["training"][::-1]
    (shuffled / "datalist.json").write_text(json.dumps(datalist))

    def picked(dataset_dir: Path, seed: int) -> list[str]:
        parser = ConfigParser()
        parser.read_config(configs("train.json"))
        parser.update({"dataset_dir": str(dataset_dir), "few_shot_fraction": 0.25, "few_shot_seed": seed})
        return [Path(item["image"]).name for item in parser.get_parsed_content("train#few_shot")]

    first = picked(organs, 0)
    assert len(first) == 4 and first == picked(shuffled, 0)
    assert picked(organs, 1) != first


@pytest.mark.slow
def test_train_saves_full_and_adapter_weights_and_tracks_mlflow(trained):
    from mlflow import MlflowClient

    from monaiseg.networks.hf_sam import build_hf_sam

    full = torch.load(trained / "models" / "model.pt", map_location="cpu", weights_only=True)
    adapter = torch.load(trained / "models" / "model_adapter.pt", map_location="cpu", weights_only=True)
    assert set(full) == set(adapter) == {"model"}
    assert set(adapter["model"]) < set(full["model"])
    assert not any(k.startswith("image_encoder.") and ".lora_" not in k for k in adapter["model"])
    assert any(k.startswith("awffm.") for k in adapter["model"]) and any(
        k.startswith("skip_decoder.") for k in adapter["model"]
    )
    build_hf_sam(8, checkpoint=str(trained / "models" / "model.pt"), **TINY_NET)  # strict load
    client = MlflowClient(tracking_uri=f"sqlite:///{trained / 'eval' / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1
    run = runs[0]
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert [m.step for m in losses] == [1, 2] and all(np.isfinite(m.value) for m in losses)
    assert run.data.params["few_shot_slices"] == "1"  # 10 % of 16 slices
    assert run.data.params["lora_rank"] == "4" and run.data.params["decoding_steps"] == "2"
    assert run.data.params["params_trainable"] != run.data.params["params_total"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "model.pt" in artifacts and any(a.startswith("config_") for a in artifacts)


@pytest.mark.slow
def test_evaluate_scores_each_test_volume(trained, organs, tmp_path):
    from monai.bundle import ConfigParser

    from monaiseg.metrics.organs import organ_scores

    out = tmp_path / "eval"
    run_bundle(["train.json", "evaluate.json"], bundle_root=str(trained), dataset_dir=str(organs), output_dir=str(out))
    test = json.loads((organs / "datalist.json").read_text())["test"]
    with open(out / "organ_metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["case"] for r in rows] == [t["case"] for t in test]
    assert list(rows[0])[:5] == ["case", "dice", "hd95", "dice_spleen", "hd95_spleen"]
    summary = json.loads((out / "organ_metrics.json").read_text())
    assert summary["cases"] == 2 and len(summary["organs"]) == 8
    # the first case again, by hand: the network on every axial slice, stacked, scored with spacing
    parser = ConfigParser()
    parser.read_config(configs("train.json", "evaluate.json"))
    parser.update({"bundle_root": str(trained), "dataset_dir": str(organs)})
    network = parser.get_parsed_content("network")
    image = nib.load(organs / test[0]["image"])
    volume = torch.as_tensor(image.get_fdata(dtype=np.float32))
    with torch.no_grad():
        pred = torch.stack([network(volume[None, None, :, :, z]).argmax(1)[0] for z in range(volume.shape[-1])], -1)
    gt = np.asarray(nib.load(organs / test[0]["label"]).dataobj)
    scores = organ_scores(pred.numpy(), gt, range(1, 9), spacing=image.header.get_zooms())
    assert float(rows[0]["dice_liver"]) == pytest.approx(scores[5]["dice"], abs=1e-5)
    assert float(rows[0]["hd95_liver"]) == pytest.approx(scores[5]["hd95"], abs=1e-4)
    assert float(rows[0]["dice"]) == pytest.approx(np.mean([s["dice"] for s in scores.values()]), abs=1e-5)


@pytest.mark.slow
def test_inference_writes_label_volumes_in_the_input_geometry(trained, organs, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    source = nib.load(organs / "volumes" / "case0003_image.nii.gz")
    affine = source.affine.copy()
    affine[:3, 3] = [-10.0, 5.0, 2.5]  # an origin and a smaller size than the test data
    nib.save(nib.Nifti1Image(source.get_fdata(dtype=np.float32)[:48, :40, :5], affine), data / "small.nii.gz")
    out = tmp_path / "out"
    run_bundle(
        ["inference.json"],
        bundle_root=str(trained),
        input_image=str(data / "small.nii.gz"),
        output_dir=str(out),
        save_overlays=True,
    )
    pred = nib.load(out / "small_seg.nii.gz")
    assert pred.shape == (48, 40, 5) and pred.get_data_dtype() == np.uint8
    assert np.allclose(pred.affine, affine)
    assert set(np.unique(np.asarray(pred.dataobj))) <= set(range(9))
    assert (out / "small_overlay.png").is_file()  # the middle axial slice, on request


@pytest.mark.slow
def test_evaluate_refuses_bad_labels_and_geometry_without_outputs(trained, organs, tmp_path):
    for problem in ("values", "geometry"):
        data = tmp_path / problem
        shutil.copytree(organs, data)
        label_path = data / json.loads((data / "datalist.json").read_text())["test"][1]["label"]
        label = nib.load(label_path)
        array, affine = np.asarray(label.dataobj).copy(), label.affine.copy()
        if problem == "values":
            array[0, 0, 0] = 12
        else:
            affine[0, 0] = 1.5
        nib.save(nib.Nifti1Image(array, affine), label_path)
        out = tmp_path / f"eval_{problem}"
        with pytest.raises(Exception) as info:
            run_bundle(
                ["train.json", "evaluate.json"], bundle_root=str(trained), dataset_dir=str(data), output_dir=str(out)
            )
        message = error_chain(info.value)
        assert str(label_path) in message
        assert ("label values [12]" in message) if problem == "values" else ("affine differs" in message)
        assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
def test_training_refuses_bad_slices_and_empty_few_shot_selection(organs, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(organs, data)
    training = json.loads((data / "datalist.json").read_text())["training"]
    for item in training:  # every slice bad, so the few-shot pick hits one
        label = np.load(data / item["label"])
        label[:2, :2] = 9
        np.save(data / item["label"], label)
    root = tmp_path / "root"
    with pytest.raises(Exception) as info:
        run_bundle(["train.json"], bundle_root=str(root), dataset_dir=str(data))
    message = error_chain(info.value)
    assert "_label.npy" in message and "mask values [9]" in message
    with pytest.raises(Exception) as info:
        run_bundle(["train.json"], bundle_root=str(root), dataset_dir=str(organs), few_shot_fraction=0.0)
    assert "few-shot" in error_chain(info.value) and "empty" in error_chain(info.value)
    assert not (root / "models" / "model.pt").exists()
