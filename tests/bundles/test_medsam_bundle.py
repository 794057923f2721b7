"""The medsam bundle: contract checks, upstream preprocessing, train / evaluate / inference on 2D
images and 3D volumes (tiny config), checkpoint round trip and bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, error_chain
from PIL import Image

from monaiseg.utils import bundle_run

BUNDLE = REPO / "bundles" / "medsam"
CONFIGS = BUNDLE / "configs"
TINY = {
    "variant": "vit_b",
    "image_size": 64,
    "encoder_depth": 2,
    "encoder_embed_dim": 64,
    "encoder_num_heads": 2,
    "pixel_mean": 0.0,
    "pixel_std": 1.0,
}


def configs(*names: str) -> list[str]:
    return [str(CONFIGS / n) for n in names]


def run_bundle(names: list[str], **overrides):
    bundle_run.run_bundle(configs(*names), in_process=True, **overrides)


def parsed(names: list[str], **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs(*names))
    parser.update(overrides)
    return parser


@pytest.fixture(scope="module")
def trained(synthetic_ct, tmp_path_factory) -> Path:
    """One tiny 3D training with MLflow tracking (`--tracking mlflow`); returns the bundle root used."""
    root = tmp_path_factory.mktemp("medsam_root")
    run_bundle(["train.json", "tiny.json"], bundle_root=str(root), dataset_dir=str(synthetic_ct), tracking="mlflow")
    return root


# ---------------------------------------------------------------- contract files


def test_bundle_specific_contract():
    """What this bundle declares beyond the shared zoo checks (scripts/verify_bundles.py)."""
    for name in (
        "metadata.json",
        "train.json",
        "evaluate.json",
        "inference.json",
        "multi_gpu_train.json",
        "logging.conf",
        "tiny.json",
        "images_2d.json",
    ):
        assert (CONFIGS / name).is_file(), name
    assert "Apache License" in (BUNDLE / "LICENSE").read_text()
    assert "## Metrics" in (BUNDLE / "docs" / "README.md").read_text()
    files = yaml.safe_load((BUNDLE / "large_files.yml").read_text())["large_files"]
    assert {f["path"] for f in files} == {"models/medsam_vit_b.pth", "models/sam_vit_b_01ec64.pth"}
    assert all(f["url"].startswith("https://") for f in files)
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["channel_def"]["1"] == "liver"


def test_default_network_is_medsam_vit_b_with_the_upstream_trainable_split():
    from monaiseg.networks import build_sam_segmenter, freeze_except, parameter_report

    model = freeze_except(
        build_sam_segmenter("vit_b", 1024, device="meta", pixel_mean=0.0, pixel_std=1.0),
        ["image_encoder", "mask_decoder"],
    )
    report = parameter_report(model)
    state = model.state_dict()  # tests/networks/manifests/medsam_vit_b.json: 314 keys, 93,735,728 values
    assert len(state) == 314 and sum(v.numel() for v in state.values()) == 93_735_728
    assert report["total"] == 93_735_472  # less the prompt encoder's random-feature buffer (2 x 128)
    prompt_encoder = sum(p.numel() for p in model.prompt_encoder.parameters())
    assert report["trainable"] == report["total"] - prompt_encoder == 93_729_252
    train = parsed(["train.json"]).get("trainable_modules")
    assert train == ["image_encoder", "mask_decoder"]
    assert parsed(["train.json"]).get_parsed_content("foundation_checkpoint").endswith("models/medsam_vit_b.pth")


# ---------------------------------------------------------------- upstream preprocessing


class Recorder(torch.nn.Module):
    """Stub network: records its input and boxes, predicts the box interior."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def forward(self, images, boxes):
        self.seen.append((images.clone(), boxes.clone()))
        out = -torch.ones(len(boxes), 1, *images.shape[-2:])
        for i, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
            out[i, 0, y0 : y1 + 1, x0 : x1 + 1] = 1.0
        return out


@pytest.mark.parametrize("rgb", [False, True])
def test_network_input_is_medsam_inference_arithmetic(tmp_path, rgb):
    """The 2D path hands the network exactly MedSAM_Inference.py's image (row-first (H, W), 3 channels
    or grey, min-max over the whole image to [0, 1]) and box (x0, y0, x1, y1) in input pixels; the
    network then resizes to 1024 (here 64), applies no mean/std and scales the box by S / W, S / H."""
    rng = np.random.default_rng(0)
    array = rng.integers(30, 200, (20, 30, 3) if rgb else (20, 30)).astype(np.uint8)  # (H, W[, 3]): not square
    Image.fromarray(array).save(tmp_path / "img.png")
    (tmp_path / "boxes.json").write_text(json.dumps([[3, 4, 25, 15]]))
    parser = parsed(["inference.json", "tiny.json", "images_2d.json"], bundle_root=str(tmp_path))
    item = parser.get_parsed_content("preprocessing")(
        {"image": str(tmp_path / "img.png"), "prompts": str(tmp_path / "boxes.json")}
    )
    recorder = Recorder()
    pred = parser.get_parsed_content("inferer")(item["image"][None], recorder, prompts=[item["prompts"]])
    images, boxes = recorder.seen[0]
    # upstream: img_3c (H, W, 3); (img - min) / clip(max - min, 1e-8); box_np as given
    img_3c = np.repeat(array[:, :, None], 3, axis=-1) if array.ndim == 2 else array
    upstream = (img_3c - img_3c.min()) / np.clip(img_3c.max() - img_3c.min(), 1e-8, None)
    ours = images[0].numpy().transpose(1, 2, 0)
    ours = np.repeat(ours, 3, axis=-1) if ours.shape[-1] == 1 else ours
    np.testing.assert_allclose(ours, upstream, atol=1e-6)
    assert boxes.tolist() == [[3.0, 4.0, 25.0, 15.0]]
    # the prediction comes back on the input grid: x first as MONAI loads the PNG, box interior = object 1
    assert pred.shape == (1, 1, 30, 20, 1)
    assert torch.equal(torch.nonzero(pred[0, 0, ..., 0].T).amin(0), torch.tensor([4, 3]))
    assert torch.equal(torch.nonzero(pred[0, 0, ..., 0].T).amax(0), torch.tensor([15, 25]))

    # inside the network: resize to S (64), no mean/std, box scaled by S / W, S / H
    net = parser.get_parsed_content("network_def")
    seen = {}
    net.image_encoder.register_forward_pre_hook(lambda m, args: seen.update(image=args[0].clone()))
    net.prompt_encoder.register_forward_pre_hook(
        lambda m, args, kwargs: seen.update(box=kwargs["boxes"].clone()), with_kwargs=True
    )
    net(images, boxes=boxes)
    expected = torch.nn.functional.interpolate(
        images.expand(-1, 3, -1, -1), size=(64, 64), mode="bilinear", align_corners=False, antialias=True
    )
    assert torch.allclose(seen["image"], expected, atol=1e-6)  # pixel_mean 0, pixel_std 1
    np.testing.assert_allclose(
        seen["box"].numpy(), np.array([[3, 4, 25, 15]]) / np.array([30, 20, 30, 20]) * 64, rtol=1e-6
    )


def test_slice_min_max_per_slice_after_the_ct_window():
    from monaiseg.transforms.medsam import SliceMinMaxd

    volume = torch.stack([torch.tensor([[0.0, 2.0], [4.0, 6.0]]), torch.full((2, 2), 3.0)], dim=-1)[None]
    out = SliceMinMaxd("image")({"image": volume})["image"]
    assert torch.allclose(out[0, ..., 0], torch.tensor([[0.0, 1 / 3], [2 / 3, 1.0]]))
    assert torch.equal(out[0, ..., 1], torch.zeros(2, 2))  # constant slice -> 0 (upstream's clip to 1e-8)
    with pytest.raises(ValueError, match="per-slice scaling needs a"):
        SliceMinMaxd("image")({"image": torch.zeros(1, 4, 4)})


# ---------------------------------------------------------------- 3D workflows


@pytest.mark.slow
def test_train_saves_official_layout_and_tracks_mlflow(trained):
    from mlflow import MlflowClient

    from monaiseg.networks import build_sam_segmenter

    model_file = trained / "models" / "model.pt"
    content = torch.load(model_file, map_location="cpu", weights_only=True)
    assert set(content) == {"model"}
    model = build_sam_segmenter(checkpoint=model_file, **TINY)  # strict load: official SAM key layout
    assert all(torch.equal(v, content["model"][k]) for k, v in model.state_dict().items())
    db = trained / "eval" / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    assert len(runs) == 1
    losses = client.get_metric_history(runs[0].info.run_id, "train_loss")
    assert [m.step for m in losses] == [1, 2] and all(np.isfinite(m.value) for m in losses)
    assert 0.0 <= runs[0].data.metrics["val_mean_dice"] <= 1.0
    assert runs[0].data.params["max_epochs"] == "1"
    assert "model.pt" in {a.path for a in client.list_artifacts(runs[0].info.run_id)}


@pytest.mark.slow
def test_evaluate_3d_writes_per_case_and_summary(trained, synthetic_ct):
    out = trained / "evaluation"
    run_bundle(
        ["train.json", "evaluate.json", "tiny.json"],
        bundle_root=str(trained),
        dataset_dir=str(synthetic_ct),
        output_dir=str(out),
    )
    for metric in ("val_mean_dice", "val_mean_nsd"):
        with open(out / f"{metric}_raw.csv") as f:
            rows = list(csv.reader(f))
        assert rows[0] == ["filename", "class0", "class1", "class2", "class3", "class4", "mean"]
        assert len(rows) == 3  # two test cases
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_cases"] == 2
    assert set(summary["per_label"]) == {"liver", "right kidney", "spleen", "aorta", "left kidney"}
    assert all(0.0 <= summary[m] <= 1.0 for m in ("val_mean_dice", "val_mean_nsd"))


@pytest.mark.slow
def test_inference_3d_carries_boxes_and_keeps_geometry(trained, synthetic_ct, tmp_path):
    image = next((synthetic_ct / "imagesTr").glob("*.nii.gz"))
    (tmp_path / "p.json").write_text(
        json.dumps(
            {
                "objects": [
                    {"label": 2, "slice": 8, "box": [5, 6, 30, 40]},
                    {"label": 7, "slice": 3, "box": [10, 10, 20, 20]},
                ]
            }
        )
    )
    run_bundle(
        ["inference.json", "tiny.json"],
        bundle_root=str(trained),
        input_image=str(image),
        input_prompts=str(tmp_path / "p.json"),
        checkpoint=str(trained / "models" / "model.pt"),
        output_dir=str(tmp_path / "out"),
        box_margin=2,
    )
    out = nib.load(tmp_path / "out" / image.name.replace(".nii.gz", "_seg.nii.gz"))
    src = nib.load(image)
    assert out.shape == src.shape and np.allclose(out.affine, src.affine)
    assert set(np.unique(np.asarray(out.dataobj))) <= {0, 2, 7}


# ---------------------------------------------------------------- 2D workflows


@pytest.mark.slow
def test_train_evaluate_infer_2d_images(synthetic_2d, tmp_path):
    root = tmp_path / "root"
    order = ["tiny.json", "images_2d.json"]
    run_bundle(["train.json", *order], bundle_root=str(root), dataset_dir=str(synthetic_2d))
    assert (root / "models" / "model.pt").is_file()
    run_bundle(
        ["train.json", "evaluate.json", *order],
        bundle_root=str(root),
        dataset_dir=str(synthetic_2d),
        output_dir=str(root / "evaluation"),
    )
    summary = json.loads((root / "evaluation" / "summary.json").read_text())
    assert set(summary["per_label"]) == {"organ", "lesion", "vessel"} and summary["num_cases"] == 1
    with open(root / "evaluation" / "val_mean_dice_raw.csv") as f:
        assert next(csv.reader(f)) == ["filename", "class0", "class1", "class2", "mean"]

    image = synthetic_2d / "images" / "case_001.png"
    (tmp_path / "boxes.json").write_text(json.dumps([[10, 12, 40, 50], [5, 5, 20, 20]]))
    run_bundle(
        ["inference.json", *order],
        bundle_root=str(root),
        input_image=str(image),
        input_prompts=str(tmp_path / "boxes.json"),
        checkpoint=str(root / "models" / "model.pt"),
        output_dir=str(tmp_path / "out"),
        save_overlays=True,
    )
    seg = np.asarray(Image.open(tmp_path / "out" / "case_001_seg.png"))
    assert seg.shape == np.asarray(Image.open(image)).shape and set(np.unique(seg)) <= {0, 1, 2}
    assert (tmp_path / "out" / "case_001_overlay.png").is_file()
    # boxes from a label file: objects keep their label values
    run_bundle(
        ["inference.json", *order],
        bundle_root=str(root),
        input_image=str(image),
        input_label=str(synthetic_2d / "labels" / "case_001.png"),
        output_dir=str(tmp_path / "out_label"),
    )
    seg = np.asarray(Image.open(tmp_path / "out_label" / "case_001_seg.png"))
    assert seg.shape == (64, 64) and set(np.unique(seg)) <= {0, 1, 2, 3}


# ---------------------------------------------------------------- bad input


def infer_2d(tmp_path: Path, **overrides) -> Path:
    out = tmp_path / "out"
    overrides.setdefault("checkpoint", "none")
    run_bundle(
        ["inference.json", "tiny.json", "images_2d.json"], bundle_root=str(tmp_path), output_dir=str(out), **overrides
    )
    return out


def expect_error(tmp_path: Path, match: list[str], **overrides) -> None:
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(Exception) as info:
        infer_2d(tmp_path, **overrides)
    text = error_chain(info.value)
    for fragment in match:
        assert fragment in text, f"{fragment!r} not in error:\n{text[-2000:]}"
    out = tmp_path / "out"
    assert not out.exists() or not any(out.iterdir()), "partial output left behind"
    for path, content in before.items():  # inputs unchanged
        assert path.read_bytes() == content


@pytest.fixture()
def scan(tmp_path) -> tuple[Path, Path]:
    png = tmp_path / "scan.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (24, 32)).astype(np.uint8)).save(png)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([[2, 2, 20, 15]]))
    return png, boxes


@pytest.mark.slow
def test_box_outside_the_image(tmp_path, scan):
    (tmp_path / "far.json").write_text(json.dumps([[2, 2, 40, 15]]))  # x1 = 40 > width 32
    expect_error(
        tmp_path,
        ["far.json", "outside the 32x24 image"],
        input_image=str(scan[0]),
        input_prompts=str(tmp_path / "far.json"),
    )


@pytest.mark.slow
def test_rgba_is_refused_and_16_bit_is_handled(tmp_path, scan):
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (24, 32, 4)).astype(np.uint8)).save(rgba)
    expect_error(
        tmp_path, ["rgba.png", "4 channels, expected 1 or 3"], input_image=str(rgba), input_prompts=str(scan[1])
    )
    deep = tmp_path / "deep.png"
    Image.fromarray((np.arange(24 * 32).reshape(24, 32) * 80).astype(np.uint16)).save(deep)  # values up to 61360
    out = infer_2d(tmp_path, input_image=str(deep), input_prompts=str(scan[1]))
    assert np.asarray(Image.open(out / "deep_seg.png")).shape == (24, 32)


@pytest.mark.slow
def test_unreadable_image(tmp_path, scan):
    broken = tmp_path / "broken.png"
    broken.write_bytes(scan[0].read_bytes()[:40])
    expect_error(tmp_path, ["broken.png"], input_image=str(broken), input_prompts=str(scan[1]))


@pytest.mark.slow
def test_checkpoint_with_wrong_keys(tmp_path, scan):
    from monaiseg.networks import build_sam_segmenter

    sd = build_sam_segmenter(**TINY).state_dict()
    sd["extra.weight"] = sd.pop("mask_decoder.iou_token.weight")
    torch.save({"model": sd}, tmp_path / "bad_ckpt.pt")
    expect_error(
        tmp_path,
        ["bad_ckpt.pt", "missing keys (1): mask_decoder.iou_token.weight", "unexpected keys (1): extra.weight"],
        input_image=str(scan[0]),
        input_prompts=str(scan[1]),
        checkpoint=str(tmp_path / "bad_ckpt.pt"),
    )


@pytest.mark.slow
def test_missing_foundation_weights_name_the_download_command(tmp_path, scan):
    expect_error(
        tmp_path,
        ["medsam_vit_b.pth", "download_large_files"],
        input_image=str(scan[0]),
        input_prompts=str(scan[1]),
        checkpoint="$@foundation_checkpoint",
        foundation_checkpoint="$@ckpt_dir + '/medsam_vit_b.pth'",
    )
