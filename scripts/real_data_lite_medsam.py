"""Rows of the real-data table (docs/benchmarks.md) for lite_medsam: the official LiteMedSAM weights fine-tuned
on real images with the bundle's own `train.json` + `images_2d.json` + `finetune_cpu.json`, scored by its own
`evaluate.json` before (zero-shot, `--checkpoint default`) and after.

Sets (from `--data DIR`):
- `wbc_cellavision`: the 70/15/15 split of `prepare_wbc` (seed 0; cells of at least 50 px), scored on the 15 test
  images twice, each a fine-tune of its own: the nucleus (mask 255) and the whole cell (mask > 0: a set where
  zero-shot is already high, so the recipe must not make it worse);
- `endotect_polyp`: the 20 polyp frames sorted by name, the first 14 training, the last 6 validation and test (the
  recipe validates once, after its last iteration, so no model is selected on them).
Each set becomes a 2D dataset of RGB images and PNG label maps (0 background, 1 the object; one box per image around
all of its object pixels, jittered in training, exact from the ground truth in evaluation).

Usage:
    .venv/bin/python scripts/real_data_lite_medsam.py --data DIR [--out rows.json] [--quick] [--sets wbc_nucleus,...]
        [--recipe extra.json] [--work DIR]

`--quick` is a smoke run (4 training and 3 test images of the WBC nucleus set, 2 iterations), not a result;
`--recipe` merges a config over finetune_cpu.json (how the recipe was chosen).
"""

from __future__ import annotations

import argparse
import json
import runpy
import shutil
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

# the docs/benchmarks.md table as scripts/real_data_report.py prints it, and its bundle runner
_report = runpy.run_path(str(Path(__file__).with_name("real_data_report.py")))
table, bundle_run = _report["table"], _report["bundle_run"]

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "bundles" / "lite_medsam"
CONFIGS = BUNDLE / "configs"
TRAIN = ["train.json", "images_2d.json", "finetune_cpu.json"]
EVALUATE = ["train.json", "evaluate.json", "images_2d.json"]
SETS = {
    "wbc_nucleus": ("nucleus", "WBC CellaVision sample, nucleus (mask 255), 70/15/15 (seed 0), test 15"),
    "wbc_cell": ("whole cell", "WBC CellaVision sample, whole cell (mask > 0), 70/15/15 (seed 0), test 15"),
    "polyps": ("polyp", "EndoTect polyps, sorted names 14 train / 6 validation = test"),
}
POLYP_TRAINING = 14


def write_label(path: Path, foreground: np.ndarray) -> str:
    """Save a boolean mask as a PNG label map (0 / 1) at `path`; its name relative to the dataset folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), foreground.astype(np.uint8)):
        raise OSError(f"{path}: could not write the PNG.")
    return f"{path.parent.name}/{path.name}"


def write_json(path: Path, content) -> Path:
    path.write_text(json.dumps(content, indent=2) + "\n")
    return path


def prepare_wbc_sets(src: Path, work: Path) -> dict[str, Path]:
    """`prepare_wbc`'s split of the WBC sample with nucleus and whole-cell label maps; {set: datalist}."""
    from monaiseg.data.cells import prepare_wbc, read_wbc_mask

    datalist = prepare_wbc(src, work / "wbc", seed=0)
    root = datalist.parent
    splits = {k: v for k, v in json.loads(datalist.read_text()).items() if k in ("training", "validation", "testing")}
    targets = {"wbc_nucleus": [], "wbc_cell": []}
    lists = {name: {split: [] for split in splits} for name in targets}
    for split, items in splits.items():
        for item in items:
            cells = cv2.imread(str(root / item["label"]), cv2.IMREAD_UNCHANGED) > 0  # cells of >= 50 px
            mask = read_wbc_mask(src / Path(item["image"]).name)
            for name, foreground in (("wbc_nucleus", cells & (mask == 255)), ("wbc_cell", cells)):
                label = write_label(root / f"labels_{name}" / Path(item["label"]).name, foreground)
                lists[name][split].append({"image": item["image"], "label": label})
    return {name: write_json(root / f"datalist_{name}.json", content) for name, content in lists.items()}


def prepare_polyps(src: Path, work: Path) -> Path:
    """The polyp frames sorted by name: the first 14 training, the rest validation and testing; the datalist."""
    images = sorted((src / "images").glob("*.jpg"))
    if len(images) <= POLYP_TRAINING:
        raise ValueError(f"{src / 'images'}: {len(images)} .jpg frames, need more than {POLYP_TRAINING}.")
    root = work / "polyps"
    items = []
    for image in images:
        mask_path = src / "masks" / f"{image.stem}.png"
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
        if mask is None:
            raise FileNotFoundError(f"{mask_path}: polyp mask not found or unreadable.")
        (root / "images").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, root / "images" / image.name)
        items.append(
            {"image": f"images/{image.name}", "label": write_label(root / "labels" / mask_path.name, mask > 127)}
        )
    held_out = items[POLYP_TRAINING:]
    return write_json(
        root / "datalist.json", {"training": items[:POLYP_TRAINING], "validation": held_out, "testing": held_out}
    )


def shorten(datalist: Path, sizes: dict[str, int]) -> Path:
    """A copy of `datalist` beside it keeping the first `sizes[split]` items of each split (the --quick run)."""
    content = json.loads(datalist.read_text())
    return write_json(datalist.with_name(f"quick_{datalist.name}"), {k: v[: sizes[k]] for k, v in content.items()})


def measure(name: str, datalist: Path, work: Path, recipe: Path | None, quick: bool) -> dict:
    """Zero-shot evaluation, fine-tune, evaluation of one set; its row."""
    target, data = SETS[name]
    root = work / name
    root.mkdir(parents=True, exist_ok=True)
    dataset = write_json(
        root / "dataset.json",
        {"dataset_dir": str(datalist.parent), "datalist": str(datalist), "labels": {"1": target}, "num_workers": 0},
    )
    extra = [recipe] if recipe else []
    quick_run = (
        [write_json(root / "quick.json", {"epoch_length": 2, "batch_size": 2, "overlay_interval": 0})] if quick else []
    )
    print(f"{name}: zero-shot evaluation, fine-tune, evaluation (logs in {root})", flush=True)
    seconds = bundle_run(
        "lite_medsam",
        [CONFIGS / c for c in EVALUATE] + [dataset],
        {"bundle_root": root, "output_dir": root / "zero_shot", "checkpoint": "default"},
        root / "zero_shot.log",
    )
    seconds += bundle_run(
        "lite_medsam",
        [CONFIGS / c for c in TRAIN] + [dataset, *extra, *quick_run],
        {"bundle_root": root},
        root / "train.log",
    )
    seconds += bundle_run(
        "lite_medsam",
        [CONFIGS / c for c in EVALUATE] + [dataset],
        {"bundle_root": root, "output_dir": root / "eval"},
        root / "evaluate.log",
    )
    before, after = (json.loads((root / d / "summary.json").read_text()) for d in ("zero_shot", "eval"))
    recipe_text = ", ".join(
        f"{k} {v}" for k, v in json.loads((CONFIGS / "finetune_cpu.json").read_text()).items() if not k.startswith("_")
    )
    note = (
        f"LiteMedSAM official weights, one ground-truth box per image (training boxes jittered); finetune_cpu.json "
        f"({recipe_text}){' + ' + recipe.name if recipe else ''}; 2 CPU cores"
        + ("; --quick smoke run, not a result" if quick else "")
    )
    return {
        "bundle": "lite_medsam",
        "data": data + (" (--quick: 4 training, 3 test)" if quick else ""),
        "metric": f"test Dice, {target}",
        "before_kind": "zero-shot",
        "before": round(float(before["val_mean_dice"]), 4),
        "after": round(float(after["val_mean_dice"]), 4),
        "time_s": round(seconds, 1),
        "note": note,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder holding wbc_cellavision/ and endotect_polyp/")
    parser.add_argument("--out", help="write the rows as a JSON list here")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: WBC nucleus, 4 training / 3 test images, 2 iterations"
    )
    parser.add_argument("--sets", help=f"comma-separated, of: {', '.join(SETS)} (default: all; --quick: wbc_nucleus)")
    parser.add_argument("--recipe", help="a JSON config merged over finetune_cpu.json (recipe search)")
    parser.add_argument(
        "--work", help="folder for the prepared sets, models, evaluation output and logs (default: temporary)"
    )
    args = parser.parse_args(argv)
    names = args.sets.split(",") if args.sets else (["wbc_nucleus"] if args.quick else list(SETS))
    if sorted(set(names) - set(SETS)):
        parser.error(f"unknown set(s) {sorted(set(names) - set(SETS))}; known: {list(SETS)}")
    sources = {"wbc": Path(args.data) / "wbc_cellavision", "polyps": Path(args.data) / "endotect_polyp"}
    for key, src in sources.items():
        if any(n.startswith(key) for n in names) and not src.is_dir():
            parser.error(f"{src}: sample folder not found")
    recipe = Path(args.recipe).resolve() if args.recipe else None
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        try:
            datalists = prepare_wbc_sets(sources["wbc"], work) if any(n.startswith("wbc") for n in names) else {}
            if "polyps" in names:
                datalists["polyps"] = prepare_polyps(sources["polyps"], work)
            if args.quick:
                datalists = {
                    n: shorten(d, {"training": 4, "validation": 2, "testing": 3}) for n, d in datalists.items()
                }
            rows = []
            for name in names:
                rows.append(measure(name, datalists[name], work, recipe, args.quick))
                print(json.dumps(rows[-1]), flush=True)
        except (FileNotFoundError, FileExistsError, ValueError, OSError, RuntimeError) as e:
            sys.exit(f"real_data_lite_medsam: {e}")
    print(table(rows))
    if args.out:
        write_json(Path(args.out), rows)


if __name__ == "__main__":
    main()
