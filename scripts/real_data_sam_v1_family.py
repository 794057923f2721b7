"""Rows of the real-data table of docs/benchmarks.md for sam_medcls and sam_automed with LiteMedSAM's pretrained encoder
(`configs/lite_medsam_encoder.json`) against the same config with a random-init encoder, same epochs and seed.

- sam_medcls: WBC 5-class classification on the WBC CellaVision sample, the bundle's own stratified
  70/15/15 datalist (`python -m monaiseg.data.classification --wbc`, seed 0); test accuracy and macro-F1
  from `evaluate.json`'s `summary.json` (15 test images).
- sam_automed: automatic polyp segmentation on the 20 EndoTect polyps, fixed 14/6 split (sorted names,
  first 14 train, the other 6 validate; `evaluate.json` runs on the same 6); mean Dice from
  `evaluate.json`'s `metrics.csv`. The note gives LiteMedSAM prompted with the ground-truth box on the same
  images (the evaluation's box baseline).

Each bundle trains twice with its own `train.json` + `lite_medsam_encoder.json`: "random-init" with
`--foundation_checkpoint null` (encoder, and for sam_automed the prompt encoder and decoder, random; the
encoder stays frozen as in the real run), then the official weights; each is then measured with
`evaluate.json`. Usage:

    .venv/bin/python scripts/real_data_sam_v1_family.py --data DIR [--out rows.json] [--quick]
        [--only sam_medcls,sam_automed] [--work DIR]

`--quick` is a smoke run (1 epoch of 2 iterations), not a result.
"""

from __future__ import annotations

import argparse
import csv
import json
import runpy
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

# the docs/benchmarks.md table as scripts/real_data_report.py prints it, and its bundle runner
_report = runpy.run_path(str(Path(__file__).with_name("real_data_report.py")))
table, bundle_run = _report["table"], _report["bundle_run"]

ROOT = Path(__file__).resolve().parent.parent
BUNDLES = ("sam_medcls", "sam_automed")
VARIANTS = {"random-init": {"foundation_checkpoint": None}, "real": {}}


def train_and_evaluate(bundle: str, root: Path, overrides: dict, train_only: dict) -> float:
    """train.json then evaluate.json, both with lite_medsam_encoder.json, into bundle root `root`; wall seconds."""
    root.mkdir(parents=True, exist_ok=True)
    common = {"bundle_root": root, **overrides}
    seconds = bundle_run(
        bundle, ["train.json", "lite_medsam_encoder.json"], {**common, **train_only}, root / "train.log"
    )
    evaluate = ["train.json", "evaluate.json", "lite_medsam_encoder.json"]
    return seconds + bundle_run(bundle, evaluate, common, root / "evaluate.log")


def wbc_datalist(src: Path, work: Path) -> Path:
    """The bundle's own stratified 70/15/15 classification datalist of the WBC sample (seed 0)."""
    from monaiseg.data.classification import wbc_items, write_classification_datalist

    return write_classification_datalist(work / "wbc_classes.json", *wbc_items(src))


def polyp_dataset(src: Path, work: Path) -> tuple[Path, int, int]:
    """EndoTect polyps as a SAM-AutoMed dataset: label maps 0 / 1 (grey PNG, from the 0/255 RGB masks), sorted
    names, the first 14 train, the rest validate (and test); images stay where they are. (dir, n_train, n_val)."""
    images = sorted((src / "images").glob("*.jpg"))
    if len(images) < 15:
        raise ValueError(f"{src / 'images'}: expected the 20 EndoTect polyp images, found {len(images)}")
    out = work / "polyps"
    (out / "labels").mkdir(parents=True, exist_ok=True)
    items = []
    for image in images:
        mask = src / "masks" / f"{image.stem}.png"
        if not mask.is_file():
            raise FileNotFoundError(f"{mask}: mask of {image.name} not found")
        label = (np.asarray(Image.open(mask).convert("L")) > 127).astype(np.uint8)
        Image.fromarray(label).save(out / "labels" / mask.name)
        items.append({"image": str(image), "label": f"labels/{mask.name}"})
    train, val = items[:14], items[14:]
    datalist = {"training": train, "validation": val, "testing": val}
    (out / "datalist.json").write_text(json.dumps(datalist, indent=2))
    return out, len(train), len(val)


def mean_dice(eval_dir: Path) -> float:
    """The mean Dice of `metrics.csv` (MONAI MetricsSaver: `name,value` rows)."""
    with open(eval_dir / "metrics.csv") as f:
        values = {row[0]: float(row[1]) for row in csv.reader(f) if len(row) == 2}
    return values["val_mean_dice"]


def measure_medcls(src: Path, work: Path, quick: bool) -> list[dict]:
    datalist = wbc_datalist(src, work)
    split = json.loads(datalist.read_text())
    overrides = {"dataset_dir": src, "datalist": datalist, "overlay_interval": 0}
    train_only = {"max_epochs": 1, "epoch_length": 2} if quick else {}
    results, seconds = {}, 0.0
    for variant, extra in VARIANTS.items():
        root = work / "sam_medcls" / variant
        print(f"sam_medcls ({variant} encoder): train + evaluate, logs in {root}", flush=True)
        seconds += train_and_evaluate("sam_medcls", root, overrides, {**train_only, **extra})
        results[variant] = json.loads((root / "eval" / "summary.json").read_text())
    lite = json.loads((ROOT / "bundles" / "sam_medcls" / "configs" / "lite_medsam_encoder.json").read_text())
    data = (
        f"WBC CellaVision sample, 5 classes, stratified {len(split['training'])}/{len(split['validation'])}/"
        f"{len(split['testing'])} (seed 0), test {len(split['testing'])}"
    )
    note = (
        f"LiteMedSAM TinyViT (frozen) + CBAM head; {lite['max_epochs']} epochs, AdamW {lite['learning_rate']:g}, "
        f"batch {lite['batch_size']}; before = the same config with a random-init encoder; both trainings and "
        "evaluations; 2 CPU cores shared with other jobs" + ("; --quick smoke run, not a result" if quick else "")
    )
    return [
        {
            "bundle": "sam_medcls",
            "data": data,
            "metric": f"test {name}",
            "before_kind": "random-init",
            "before": results["random-init"][key],
            "after": results["real"][key],
            "time_s": round(seconds, 1),
            "note": note,
        }
        for name, key in (("accuracy", "accuracy"), ("macro-F1", "macro_f1"))
    ]


def measure_automed(src: Path, work: Path, quick: bool) -> list[dict]:
    dataset, n_train, n_val = polyp_dataset(src, work)
    overrides = {"dataset_dir": dataset, "labels": "{'1': 'polyp'}", "overlay_interval": 0}
    train_only = {"max_epochs": 1, "epoch_length": 2} if quick else {}
    dice, seconds, box = {}, 0.0, None
    for variant, extra in VARIANTS.items():
        root = work / "sam_automed" / variant
        print(f"sam_automed ({variant} encoder): train + evaluate, logs in {root}", flush=True)
        seconds += train_and_evaluate("sam_automed", root, overrides, {**train_only, **extra})
        dice[variant] = mean_dice(root / "eval")
        box = json.loads((root / "eval" / "summary.json").read_text())["lite_medsam_box"]["dice"]
    lite = json.loads((ROOT / "bundles" / "sam_automed" / "configs" / "lite_medsam_encoder.json").read_text())
    note = (
        f"MobileNetV3 prompt generator (random init) + LiteMedSAM decoder, encoder frozen; {lite['max_epochs']} "
        f"epochs, AdamW {lite['learning_rate']:g}, batch {lite['batch_size']}; before = the same config with "
        f"random-init LiteMedSAM weights; LiteMedSAM with the ground-truth box: {box:.3f}; both trainings and "
        "evaluations; 2 CPU cores shared with other jobs" + ("; --quick smoke run, not a result" if quick else "")
    )
    return [
        {
            "bundle": "sam_automed",
            "data": f"EndoTect polyps, sorted names {n_train}/{n_val}, validation {n_val}",
            "metric": "validation Dice",
            "before_kind": "random-init",
            "before": dice["random-init"],
            "after": dice["real"],
            "time_s": round(seconds, 1),
            "note": note,
        }
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder holding wbc_cellavision/ and endotect_polyp/")
    parser.add_argument("--out", help="write the rows as a JSON list here")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 epoch of 2 iterations (not a result)")
    parser.add_argument("--only", help=f"comma-separated bundles, of: {', '.join(BUNDLES)}")
    parser.add_argument("--work", help="folder for datalists, checkpoints, eval output and logs (default: temporary)")
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BUNDLES)
    unknown = sorted(set(names) - set(BUNDLES))
    if unknown:
        parser.error(f"unknown bundle(s) {unknown}; known: {list(BUNDLES)}")
    sources = {"sam_medcls": Path(args.data) / "wbc_cellavision", "sam_automed": Path(args.data) / "endotect_polyp"}
    for name in names:
        if not sources[name].is_dir():
            parser.error(f"{sources[name]}: sample folder for {name} not found")
    sys.path.insert(0, str(ROOT))
    measure = {"sam_medcls": measure_medcls, "sam_automed": measure_automed}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            rows = [row for name in names for row in measure[name](sources[name], work, args.quick)]
        except (FileNotFoundError, ValueError, RuntimeError) as e:
            sys.exit(f"real_data_sam_v1_family: {e}")
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
