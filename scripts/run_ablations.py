"""Run BloodCellSAM2 ablations and write the paper's Table 4 (CSV + Markdown).

Each ablation is one override file in `bundles/bloodcell_sam2/configs/ablations/` ("full" = the
complete model, no override). For each, in its own output folder, the training stages it names
(`stages`: stage 1 `train`, stage 2 `train_video`) run as bundle workflows in this process
(`monaiseg.utils.run_bundle`, the output in `<out>/<ablation>/run.log`), then the image evaluation (mDice,
boundary F1) and the video evaluation (TRA). Columns: trainable parameters
(%, of the last stage's policy), mDice, TRA, boundary F1, training time (s).

    python scripts/run_ablations.py --dataset DIR --out DIR [--ablations full abl2_no_temporal_loss ...]
        [--override configs/tiny.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from monaiseg.utils.bundle_run import run_bundle

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "bloodcell_sam2"
COLUMNS = ["ablation", "description", "trainable_percent", "mdice", "tra", "boundary_f1", "training_time_s"]


def ablation_names() -> list[str]:
    return ["full"] + sorted(p.stem for p in (BUNDLE / "configs" / "ablations").glob("*.json"))


def run_ablation(name: str, dataset: Path, out: Path, extra: list[str]) -> dict:
    """Train and evaluate one ablation in `out/name`; returns its Table 4 row."""
    override = [] if name == "full" else [f"configs/ablations/{name}.json"]
    settings = json.loads((BUNDLE / "configs" / "train.json").read_text())
    for path in extra + override:
        settings.update(json.loads((BUNDLE / path).read_text()))
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    args = {
        "dataset_dir": dataset.resolve(),
        "ckpt_dir": (folder / "models").resolve(),
        "output_dir": (folder / "eval").resolve(),
    }
    stage_configs = {"train": ["configs/train.json"], "train_video": ["configs/train.json", "configs/train_video.json"]}
    log = folder / "run.log"
    log.unlink(missing_ok=True)

    def run(configs: list[str]) -> None:
        run_bundle(
            [BUNDLE / c for c in configs + extra + override], in_process=True, log=log, bundle_root=BUNDLE, **args
        )

    start = time.perf_counter()
    for stage in settings["stages"]:
        run(stage_configs[stage])
    training_time = time.perf_counter() - start
    run(["configs/train.json", "configs/evaluate.json"])
    run(["configs/train.json", "configs/train_video.json", "configs/evaluate_video.json"])
    images = json.loads((folder / "eval" / "summary.json").read_text())
    videos = json.loads((folder / "eval" / "tracking.json").read_text())
    return {
        "ablation": name,
        "description": settings.get("ablation", "full model"),
        "trainable_percent": round(videos["parameters"]["trainable_percent"], 4),
        "mdice": round(images["val_mean_dice"], 4),
        "tra": round(videos["mean_tra"], 4),
        "boundary_f1": round(images["val_boundary_f1"], 4),
        "training_time_s": round(training_time, 1),
    }


def write_table(rows: list[dict], out: Path) -> None:
    with open(out / "table4.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| Ablation | Trainable % | mDice | TRA | Boundary F1 | Training time (s) |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {r['description']} | {r['trainable_percent']} | {r['mdice']} | {r['tra']} | {r['boundary_f1']} | "
        f"{r['training_time_s']} |"
        for r in rows
    ]
    (out / "table4.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dataset", type=Path, required=True, help="dataset folder with datalist.json (images + videos)"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (one sub-folder per ablation)")
    parser.add_argument("--ablations", nargs="+", default=ablation_names(), choices=ablation_names())
    parser.add_argument(
        "--override",
        action="append",
        default=[],
        help="extra override config relative to the bundle, e.g. configs/tiny.json (repeatable)",
    )
    args = parser.parse_args(argv)
    if not (args.dataset / "datalist.json").is_file():
        parser.error(f"{args.dataset}: no datalist.json (make one with python -m monaiseg.data.synthetic_cells)")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.ablations:
        print(f"[{name}] running ...", flush=True)
        rows.append(run_ablation(name, args.dataset, args.out, args.override))
        print(f"[{name}] {rows[-1]}", flush=True)
        write_table(rows, args.out)
    print((args.out / "table4.md").read_text())


if __name__ == "__main__":
    main()
