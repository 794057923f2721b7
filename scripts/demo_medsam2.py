"""MedSAM2 demo: synthetic CT -> brief fine-tuning (tiny config) -> one box per organ on a held-out
volume -> bidirectional propagation -> DSC/NSD per organ, prediction NIfTI and a PNG montage.

Run through `bash scripts/demo.sh` (sets up the environment from the lock first).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.bundle import run

from monaiseg.data import SYNTHETIC_CT_LABELS, make_synthetic_ct_dataset
from monaiseg.metrics import label_volume_scores
from monaiseg.prompts import key_slice, mask_box
from monaiseg.visualize import save_montage

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "medsam2"


def step(message: str) -> None:
    print(f"\n=== [{time.strftime('%H:%M:%S')}] {message}", flush=True)


def prompt_file_from_label(label: np.ndarray, path: Path) -> Path:
    """One box per organ on its key slice (largest area), in the bundle's JSON prompt format."""
    objects = []
    for value, name in SYNTHETIC_CT_LABELS.items():
        mask = label == value
        if mask.any():
            k = key_slice(mask)
            x0, y0, x1, y1 = mask_box(mask[..., k])  # x = j (columns), y = i (rows)
            objects.append({"label": value, "name": name, "slice": k, "box": [y0, x0, y1, x1]})
    path.write_text(json.dumps({"objects": objects}, indent=1))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="demo_output", help="output folder")
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--iterations", type=int, default=25, help="iterations per epoch")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    configs = [str(BUNDLE / "configs" / name) for name in ("train.json", "tiny.json")]
    common = {"bundle_root": str(out / "bundle"), "logging_file": str(BUNDLE / "configs" / "logging.conf")}

    step(f"1/4 synthetic CT set: {args.cases} cases -> {out / 'data'}")
    datalist = make_synthetic_ct_dataset(
        out / "data",
        num_cases=args.cases,
        shape=(96, 96, 32),
        splits={"training": args.cases - 2, "validation": 1, "testing": 1},
    )

    step(
        f"2/4 fine-tuning medsam2 (tiny: Hiera-tiny at 256, random init) "
        f"for {args.epochs} x {args.iterations} iterations"
    )
    run(
        config_file=configs,
        dataset_dir=str(out / "data"),
        image_size=256,
        max_epochs=args.epochs,
        val_interval=args.epochs,
        learning_rate=1e-3,
        batch_size=8,
        slices_per_volume=4,
        trainable_modules=["sam_mask_decoder", "sam_prompt_encoder"],
        epoch_length=args.iterations,
        **common,
    )

    step("3/4 segmenting the held-out volume from one box per organ (bidirectional propagation)")
    case = json.loads(datalist.read_text())["testing"][0]
    image_path, label_path = out / "data" / case["image"], out / "data" / case["label"]
    gt = np.asarray(nib.load(label_path).dataobj).astype(np.int32)
    prompts = prompt_file_from_label(gt, out / "prompts.json")
    run(
        config_file=[str(BUNDLE / "configs" / "inference.json")],
        image_size=256,
        input_image=str(image_path),
        input_prompts=str(prompts),
        output_dir=str(out / "prediction"),
        **common,
    )
    pred_path = out / "prediction" / (image_path.name.replace(".nii.gz", "_seg.nii.gz"))
    pred_img = nib.load(pred_path)
    pred = np.asarray(pred_img.dataobj).astype(np.int32)

    step("4/4 scores (DSC, NSD at 2 mm) per organ")
    spacing = nib.load(image_path).header.get_zooms()[:3]
    scores = label_volume_scores(pred, gt, list(SYNTHETIC_CT_LABELS), spacing=spacing, tolerance_mm=2.0)
    print(f"{'organ':<14}{'DSC':>8}{'NSD':>8}")
    for value, name in SYNTHETIC_CT_LABELS.items():
        print(f"{name:<14}{scores[value]['dsc']:>8.3f}{scores[value]['nsd']:>8.3f}")
    print(
        f"{'mean':<14}{np.mean([s['dsc'] for s in scores.values()]):>8.3f}"
        f"{np.mean([s['nsd'] for s in scores.values()]):>8.3f}"
    )
    image = np.asarray(nib.load(image_path).dataobj, dtype=np.float32)
    montage = save_montage(np.clip((image + 160) / 400, 0, 1), pred, out / "overlay_montage.png", gt=gt)
    same_geometry = np.allclose(pred_img.affine, nib.load(image_path).affine) and pred.shape == gt.shape
    print(f"\nprediction: {pred_path} (input geometry kept: {same_geometry})\nmontage:    {montage}")


if __name__ == "__main__":
    main()
