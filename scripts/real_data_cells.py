"""Rows of the real-data table (docs/benchmarks.md) for unet_cells and bloodcell_sam2: each bundle's own `train.json`
for a fixed CPU budget on the WBC CellaVision sample, then its own `evaluate.json` on the test split.

The sample (`DIR/wbc_cellavision`) is converted with `prepare_wbc` (70/15/15, seed 0; the cell is the whole white
cell, nucleus and cytoplasm). Training runs up to `--epochs` (train.json's 100 by default) and stops at the end of
the epoch in which `--minutes` of training have passed; the best validation-Dice epoch is kept (the bundle's
`models/model.pt`) and `evaluate.json` measures it on the 15 test images: Dice and mIoU rows, boundary F1 (2 px) in
the note. bloodcell_sam2 runs on random SAM2 weights (no SAM2 checkpoint is available offline), Hiera-tiny at 256
px, with the bundle's PEFT recipe and its ground-truth box prompts; unet_cells is the paper's U-Net baseline.

Usage:
    .venv/bin/python scripts/real_data_cells.py --data DIR [--out rows.json] [--quick] [--minutes 10]
        [--epochs N] [--only unet_cells,bloodcell_sam2] [--work DIR]

`--quick` is a smoke run (tiny.json networks, 2 iterations), not a result.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import runpy
import sys
import tempfile
from pathlib import Path

# the docs/benchmarks.md table as scripts/real_data_report.py prints it, and its bundle runner
_report = runpy.run_path(str(Path(__file__).with_name("real_data_report.py")))
table, bundle_run = _report["table"], _report["bundle_run"]

ROOT = Path(__file__).resolve().parent.parent
SPLIT = "WBC CellaVision sample, whole cell, 70/15/15 (seed 0), test 15"
BUNDLES = {
    "unet_cells": {
        "overrides": {},
        "note": "MONAI UNet from scratch (the paper's U-Net baseline)",
    },
    "bloodcell_sam2": {
        "overrides": {"sam2_size": "tiny", "image_size": 256, "foundation_checkpoint": None},
        "note": "random SAM2 weights (no SAM2 checkpoint offline): Hiera-tiny at 256 px, PEFT, ground-truth boxes",
    },
}
# the epoch-level time cap, merged after train.json: ValidationHandler (attached first) still runs on the last epoch
BUDGET_CONFIG = {
    "time_budget_imports": ["$from ignite.engine import Events", "$from ignite.handlers import TimeLimit"],
    "run": [
        "$@train#trainer.add_event_handler(Events.EPOCH_COMPLETED, TimeLimit(@time_budget_s))",
        "$@train#trainer.run()",
    ],
}
TRAIN_ITERATION = re.compile(r"Epoch: (\d+)/\d+, Iter: (\d+)/(\d+) ")


def measure(bundle: str, dataset: Path, work: Path, minutes: float, epochs: int | None, quick: bool) -> list[dict]:
    """Train then evaluate `bundle` on the prepared WBC set; its Dice and mIoU rows."""
    configs = ROOT / "bundles" / bundle / "configs"
    root = work / bundle
    root.mkdir(parents=True, exist_ok=True)
    budget = work / "time_budget.json"
    budget.write_text(json.dumps(BUDGET_CONFIG))
    extra = [configs / "tiny.json"] if quick else []
    overrides = {"dataset_dir": dataset, "bundle_root": root, "num_workers": 0, **BUNDLES[bundle]["overrides"]}
    if quick:
        overrides.update({"sam2_size": "tiny", "image_size": 128})
    train_overrides = {**overrides, "overlay_interval": 0, "time_budget_s": max(1, round(minutes * 60))}
    if epochs is not None:
        train_overrides["max_epochs"] = epochs
    print(f"{bundle}: training (up to {minutes:g} min), log {root / 'train.log'}", flush=True)
    seconds = bundle_run(bundle, [configs / "train.json", *extra, budget], train_overrides, root / "train.log")
    done = [int(e) for e, i, n in TRAIN_ITERATION.findall((root / "train.log").read_text()) if i == n]
    print(f"{bundle}: evaluating on the test split, log {root / 'evaluate.log'}", flush=True)
    seconds += bundle_run(
        bundle, [configs / "train.json", *extra, configs / "evaluate.json"], overrides, root / "evaluate.log"
    )
    summary = json.loads((root / "eval" / "summary.json").read_text())
    note = (
        f"{BUNDLES[bundle]['note']}; boundary F1 (2 px) {summary['val_boundary_f1']:.3f}; "
        f"{max(done, default=0)} epochs in a {minutes:g}-min budget, best validation epoch; "
        f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[1]:.1f} (5 min) at the end"
        + ("; --quick smoke run, not a result" if quick else "")
    )
    return [
        {
            "bundle": bundle,
            "data": SPLIT,
            "metric": f"test {name}",
            "before_kind": "none",
            "before": None,
            "after": float(summary[key]),
            "time_s": round(seconds, 1),
            "note": note,
        }
        for name, key in (("Dice", "val_mean_dice"), ("mIoU", "val_mean_iou"))
    ]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder holding wbc_cellavision/")
    parser.add_argument("--out", help="write the rows as a JSON list here")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny networks, 2 iterations (not a result)")
    parser.add_argument(
        "--minutes", type=float, default=10.0, help="training budget per bundle (stops at an epoch's end)"
    )
    parser.add_argument("--epochs", type=int, help="most epochs per bundle (default: train.json's max_epochs)")
    parser.add_argument("--only", help=f"comma-separated bundles, of: {', '.join(BUNDLES)}")
    parser.add_argument(
        "--work", help="folder for the prepared set, checkpoints, eval output and logs (default: temporary)"
    )
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(BUNDLES)
    unknown = sorted(set(names) - set(BUNDLES))
    if unknown:
        parser.error(f"unknown bundle(s) {unknown}; known: {list(BUNDLES)}")
    if args.minutes <= 0:
        parser.error(f"--minutes must be positive, got {args.minutes}")
    src = Path(args.data) / "wbc_cellavision"
    if not src.is_dir():
        parser.error(f"{src}: WBC sample folder not found (expected NNN.bmp, NNN.png and class_labels.csv)")
    sys.path.insert(0, str(ROOT))
    from monaiseg.data.cells import prepare_wbc

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            datalist = prepare_wbc(src, work / "wbc", seed=0)
            minutes = 0.05 if args.quick else args.minutes
            epochs = 1 if args.quick else args.epochs
            rows = [row for name in names for row in measure(name, datalist.parent, work, minutes, epochs, args.quick)]
        except (FileNotFoundError, FileExistsError, ValueError, RuntimeError) as e:
            sys.exit(f"real_data_cells: {e}")
    print(table(rows))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
