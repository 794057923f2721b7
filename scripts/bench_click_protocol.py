"""The click protocol of interactive segmentation on the shared real images: Dice after k = 1..5 simulated
clicks and NoC@85 / NoC@90 (clicks to reach Dice 0.85 / 0.90; 5 + 1 counted when never reached within 5).

Clicks (`monaiseg.transforms.clicks.error_region_click`): the first at the centre of the object (an empty
prediction misses all of it), each next one at the centre of the largest error region of the current
prediction, positive in a miss, negative in a false positive.

- 2D (polyps, white blood cells as whole cells, DeepLesion CT key slices): request k sends clicks 1..k
  (as 3D Slicer and OHIF send all clicks of a segment; foreground ones first, as the server orders them),
  LiteMedSAM through box carry on a one-slice volume (the bundle's settings and its path on the server;
  the embedding is reused between requests).
- 3D (the two DeepLesion volumes): click 1 on the slice of the largest lesion area starts the object, which
  is carried through the volume; click k > 1 goes to the slice with the largest error region, as a
  correction of the session (`BoxCarry.correct`); Dice over the volume. Also the issue's case: carry from
  the lesion's box on its key slice, then a foreground click at the lesion's centre as a correction.
  Checked: a correction never changes a slice outside the slices it reports, and Dice never falls.
- The correction rule measured here (`monaiseg.inferers.click_seed.merge_click`): a click changes the previous
  mask only in the connected region of the decoder's change that holds it, within the click's disk (radius:
  its distance to the previous mask's boundary); a re-carry keeps slices carried from the other side.
  `--json` holds every image's row.

Models: lite_medsam with its released weights. sam_med2d, medsam and medsam2 need weights that cannot be
downloaded on these machines (the script says which are missing).

    .venv/bin/python scripts/bench_click_protocol.py [--limit N] [--mode boxes|boxes+points|points] [--json out]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CLICKS = 5
BUNDLE_SETTINGS = {"letterbox": 256, "min_iou": 0.8, "overlap": "order", "min_area": 1}


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    total = int(pred.sum()) + int(gt.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & gt).sum()) / total


def image_sets(data: Path, limit: int | None) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """{set: [(name, image (H, W, C) uint8, object (H, W) bool)]} of the 2D sets."""
    sets: dict[str, list] = {"polyp": [], "wbc_cell": [], "deeplesion_slice": []}
    for path in sorted((data / "endotect_polyp" / "images").glob("*.jpg"))[:limit]:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(data / "endotect_polyp" / "masks" / f"{path.stem}.png"), cv2.IMREAD_GRAYSCALE) > 127
        sets["polyp"].append((path.name, image, mask))
    for path in sorted((data / "wbc_cellavision").glob("*.bmp"))[: limit or 20]:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(path.with_suffix(".png")), cv2.IMREAD_GRAYSCALE) > 0
        sets["wbc_cell"].append((path.name, image, mask))
    for name, imgs, gts in lesion_volumes(data):
        areas = gts.reshape(len(gts), -1).sum(1)
        for k in np.argsort(-areas)[:3]:  # the 3 slices of largest lesion area per volume
            sets["deeplesion_slice"].append((f"{name}[{k}]", imgs[k][..., None], gts[k]))
    return {k: v for k, v in sets.items() if v}


def lesion_volumes(data: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    for path in sorted((data / "deeplesion_ct").glob("*.npz")):
        with np.load(path) as npz:
            out.append((path.stem, npz["imgs"], npz["gts"] > 0))
    return out


def volume_of(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) or (D, H, W) uint8 -> the (C, H, W, D) volume box carry takes (rows first, as upstream)."""
    if image.ndim == 3 and image.shape[-1] in (1, 3):
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[..., None].float()
    return torch.from_numpy(np.ascontiguousarray(image.transpose(1, 2, 0)))[None].float()


def protocol_2d(network, image, gt, settings) -> list[float]:
    """Dice after requests with clicks 1..k (k = 1..5), each a fresh box carry on the one-slice volume."""
    from monaiseg.inferers import BoxCarry
    from monaiseg.prompts import ObjectPrompt
    from monaiseg.transforms.clicks import error_region_click

    volume, pred, clicks, scores = volume_of(image), np.zeros_like(gt), [], []
    for _ in range(CLICKS):
        x, y, label = error_region_click(pred, gt)
        if label < 0:  # nothing left to fix
            scores.append(1.0)
            continue
        clicks.append(((float(x), float(y)), label))
        sent = sorted(clicks, key=lambda c: -c[1])  # foreground clicks first, as the server parses a request
        prompt = ObjectPrompt(
            obj_id=1, frame=0, points=tuple(c[0] for c in sent), point_labels=tuple(c[1] for c in sent)
        )
        pred = BoxCarry(network, volume, settings).start([prompt])[..., 0].numpy() > 0
        scores.append(dice(pred, gt))
    return scores


def protocol_3d(network, imgs, gts, settings) -> tuple[list[float], list[str]]:
    """Dice over the volume after click 1 (a new object on the slice of largest lesion area) and 4
    corrections, each on the slice of the largest error region; and the requirement violations."""
    from monaiseg.inferers import BoxCarry
    from monaiseg.prompts import ObjectPrompt
    from monaiseg.transforms.clicks import error_region_click

    volume, gt = volume_of(imgs), np.ascontiguousarray(gts.transpose(1, 2, 0))
    key = int(np.argmax(gt.reshape(-1, gt.shape[-1]).sum(0)))
    carry, problems, scores = BoxCarry(network, volume, settings), [], []
    x, y, _ = error_region_click(np.zeros_like(gt[..., key]), gt[..., key])
    pred = carry.start([ObjectPrompt(obj_id=1, frame=key, points=((float(x), float(y)),), point_labels=(1,))])
    pred = pred.numpy() > 0
    scores.append(dice(pred, gt))
    for _ in range(CLICKS - 1):
        errors = [int((pred[..., k] ^ gt[..., k]).sum()) for k in range(gt.shape[-1])]
        k = int(np.argmax(errors))
        x, y, label = error_region_click(pred[..., k], gt[..., k])
        if label < 0:
            scores.append(scores[-1])
            continue
        before = pred.copy()
        changed = carry.correct(ObjectPrompt(obj_id=1, frame=k, points=((float(x), float(y)),), point_labels=(label,)))
        pred = carry.labels.numpy() > 0
        untouched = [j for j in range(gt.shape[-1]) if j not in changed]
        if not np.array_equal(pred[..., untouched], before[..., untouched]):
            problems.append(f"a correction on slice {k} changed slices outside {changed}")
        scores.append(dice(pred, gt))
    return scores, problems


def centre_click_on_carry(network, imgs, gts, settings) -> tuple[float, float, list[int]]:
    """The issue's case: carry from the lesion's box on its key slice, then a foreground click at the
    lesion's centre there as a correction -> (Dice before, Dice after, slices changed)."""
    from monaiseg.inferers import BoxCarry
    from monaiseg.prompts import ObjectPrompt, mask_box
    from monaiseg.transforms.clicks import error_region_click

    volume, gt = volume_of(imgs), np.ascontiguousarray(gts.transpose(1, 2, 0))
    key = int(np.argmax(gt.reshape(-1, gt.shape[-1]).sum(0)))
    carry = BoxCarry(network, volume, settings)
    before = dice(carry.start([ObjectPrompt(obj_id=1, frame=key, box=mask_box(gt[..., key]))]).numpy() > 0, gt)
    x, y, _ = error_region_click(np.zeros_like(gt[..., key]), gt[..., key])
    changed = carry.correct(ObjectPrompt(obj_id=1, frame=key, points=((float(x), float(y)),), point_labels=(1,)))
    return before, dice(carry.labels.numpy() > 0, gt), changed


def noc(scores: list[float], target: float) -> int:
    return next((k + 1 for k, s in enumerate(scores) if s >= target), CLICKS + 1)


def summary(rows: list[list[float]], names: list[str]) -> dict:
    table = np.asarray(rows)
    return {
        "n": len(rows),
        "rows": {name: [round(float(v), 4) for v in row] for name, row in zip(names, rows)},
        "dice": [round(float(v), 3) for v in table.mean(0)],
        "noc85": round(float(np.mean([noc(r, 0.85) for r in rows])), 2),
        "noc90": round(float(np.mean([noc(r, 0.90) for r in rows])), 2),
    }


def missing_weights() -> dict[str, str]:
    """Bundles of the protocol whose real weights are not on this machine."""
    out = {}
    for name in ("sam_med2d", "medsam", "medsam2"):
        models = REPO / "bundles" / name / "models"
        if not any(models.glob("*.pt*")) if models.is_dir() else True:
            out[name] = f"no real weights in bundles/{name}/models (they cannot be downloaded here)"
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--limit", type=int, default=None, help="images per 2D set (default: all; 20 white blood cells)"
    )
    parser.add_argument("--mode", default="boxes", help="click_mode of a new object from a click")
    parser.add_argument("--sides", default=None, help="click_sides, comma-separated fractions of the input side")
    parser.add_argument("--agree-iou", type=float, default=0.9)
    parser.add_argument("--no-3d", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if not (args.data / "README.md").is_file():
        print(f"no shared data at {args.data}", file=sys.stderr)
        return 1
    from monaiseg.data.memory_cache import MemoryLRU
    from monaiseg.inferers import BoxCarrySettings
    from monaiseg.inferers.embedding_reuse import EmbeddingReuse
    from monaiseg.networks import build_lite_medsam

    torch.set_grad_enabled(False)
    model = build_lite_medsam("default", runtime="auto")
    network = EmbeddingReuse(model, MemoryLRU(256 << 20), identity="lite_medsam")
    extra = {"click_mode": args.mode, "agree_iou": args.agree_iou}
    if args.sides:
        extra["click_sides"] = tuple(float(v) for v in args.sides.split(","))
    settings = BoxCarrySettings(**BUNDLE_SETTINGS, **extra)
    results: dict = {"settings": extra, "missing": missing_weights(), "sets": {}, "problems": []}
    start = time.time()
    for name, items in image_sets(args.data, args.limit).items():
        rows = [protocol_2d(network, image, gt, settings) for _, image, gt in items]
        results["sets"][name] = summary(rows, [n for n, _, _ in items])
    if not args.no_3d:
        rows, checks, names = [], [], []
        for name, imgs, gts in lesion_volumes(args.data):
            names.append(name)
            scores, problems = protocol_3d(network, imgs, gts, settings)
            rows.append(scores)
            results["problems"] += [f"{name}: {p}" for p in problems]
            before, after, changed = centre_click_on_carry(network, imgs, gts, settings)
            checks.append(
                {"volume": name, "dice_before": round(before, 3), "dice_after": round(after, 3), "changed": changed}
            )
        results["sets"]["deeplesion_volume"] = summary(rows, names)
        results["centre_click"] = checks
    results["seconds"] = round(time.time() - start, 1)
    print(f"lite_medsam (released weights), click_mode={args.mode}, sides={settings.click_sides}")
    print("| set | n | " + " | ".join(f"Dice@{k}" for k in range(1, CLICKS + 1)) + " | NoC@85 | NoC@90 |")
    print("|---|---|" + "---|" * (CLICKS + 2))
    for name, s in results["sets"].items():
        print(
            f"| {name} | {s['n']} | " + " | ".join(f"{v:.3f}" for v in s["dice"]) + f" | {s['noc85']} | {s['noc90']} |"
        )
    for check in results.get("centre_click", []):
        print(f"centre click on a carried result: {check}")
    for problem in results["problems"]:
        print(f"PROBLEM: {problem}")
    for name, why in results["missing"].items():
        print(f"{name}: {why}")
    falls = {n: s["dice"] for n, s in results["sets"].items() if any(b < a for a, b in zip(s["dice"], s["dice"][1:]))}
    print(f"mean Dice falls from click k to k+1: {falls or 'never'}; {results['seconds']} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
