"""Synthetic 2D medical-like images for the SAM / SAM-Med2D family (tests, tiny configs, demo).

- Segmentation (`make_synthetic_2d_dataset`): a grey (or RGB) scan-like image with a bright
  body region and up to three structures, each one connected blob with its own intensity:
  1 organ (large ellipse), 2 lesion (small disc inside or beside the organ), 3 vessel (bar).
  Labels are uint8 class maps (0 background), the layout SAM-Med2D / SAM-AutoMed train on.
- Classification (`make_synthetic_classification_dataset`): one shape per image (disc, ring or
  square) on a noisy background, in class folders plus a CSV, as users keep such data.
"""

from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from monaiseg.data.datalist import split_cases, write_datalist
from monaiseg.utils.files import atomic_folders

ORGAN_CLASSES = {1: "organ", 2: "lesion", 3: "vessel"}
SHAPE_CLASSES = ("disc", "ring", "square")
INTENSITY = {1: 150.0, 2: 220.0, 3: 90.0}  # grey value of each structure on a body of 60
NOISE = 10.0


def _grid(shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def _to_uint8(image: np.ndarray, rgb: bool, rng: np.random.Generator) -> np.ndarray:
    image = np.clip(image + rng.normal(0, NOISE, image.shape), 0, 255).astype(np.uint8)
    if not rgb:
        return image
    tint = rng.uniform(0.8, 1.0, 3)
    return np.clip(image[..., None] * tint, 0, 255).astype(np.uint8)


def make_synthetic_2d(
    shape: Sequence[int] = (128, 128), seed: int | Sequence[int] = 0, rgb: bool = False, num_classes: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """One case: image uint8 (H, W) grey or (H, W, 3) RGB, label uint8 (H, W) with the first
    `num_classes` of `ORGAN_CLASSES`, each present as exactly one connected blob."""
    if not 1 <= num_classes <= len(ORGAN_CLASSES):
        raise ValueError(f"num_classes must be 1..{len(ORGAN_CLASSES)}, got {num_classes}")
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = _grid(shape)
    image = np.zeros(shape, np.float32)
    body = ((yy - h / 2) / (0.46 * h)) ** 2 + ((xx - w / 2) / (0.46 * w)) ** 2 <= 1
    image[body] = 60.0
    label = np.zeros(shape, np.uint8)

    # organ: a rotated ellipse in the left/centre of the body
    cy, cx = h * rng.uniform(0.38, 0.55), w * rng.uniform(0.35, 0.5)
    ry, rx, angle = h * rng.uniform(0.16, 0.22), w * rng.uniform(0.12, 0.17), rng.uniform(0, np.pi)
    u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
    v = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
    label[(u / ry) ** 2 + (v / rx) ** 2 <= 1] = 1
    if num_classes >= 2:  # lesion: a small disc near the organ centre
        ly, lx, lr = (
            cy + rng.uniform(-0.3, 0.3) * ry,
            cx + rng.uniform(-0.3, 0.3) * rx,
            min(h, w) * rng.uniform(0.05, 0.07),
        )
        label[(yy - ly) ** 2 + (xx - lx) ** 2 <= lr**2] = 2
    if num_classes >= 3:  # vessel: a vertical bar on the right of the body
        vx, half = w * rng.uniform(0.68, 0.75), w * rng.uniform(0.03, 0.045)
        label[(np.abs(xx - vx) <= half) & (yy >= 0.2 * h) & (yy <= 0.8 * h)] = 3
    for value in range(1, num_classes + 1):
        image[label == value] = INTENSITY[value] + rng.uniform(-10, 10)
    return _to_uint8(image, rgb, rng), label


def make_shape_image(
    shape_class: str, shape: Sequence[int] = (64, 64), seed: int | Sequence[int] = 0, rgb: bool = True
) -> np.ndarray:
    """One image uint8 (H, W, 3) (or (H, W)) showing `shape_class` (one of `SHAPE_CLASSES`)."""
    if shape_class not in SHAPE_CLASSES:
        raise ValueError(f"unknown shape class {shape_class!r}; choose one of {SHAPE_CLASSES}")
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = _grid(shape)
    cy, cx = h * rng.uniform(0.4, 0.6), w * rng.uniform(0.4, 0.6)
    r = min(h, w) * rng.uniform(0.2, 0.3)
    dist = np.hypot(yy - cy, xx - cx)
    if shape_class == "disc":
        mask = dist <= r
    elif shape_class == "ring":
        mask = (dist <= r) & (dist >= 0.6 * r)
    else:
        mask = (np.abs(yy - cy) <= 0.85 * r) & (np.abs(xx - cx) <= 0.85 * r)
    image = np.full(shape, 50.0, np.float32)
    image[mask] = rng.uniform(170, 220)
    return _to_uint8(image, rgb, rng)


def make_synthetic_2d_dataset(
    out_dir: str | os.PathLike,
    num_images: int = 12,
    shape: Sequence[int] = (128, 128),
    seed: int = 0,
    rgb: bool = False,
    num_classes: int = 3,
    splits: Sequence[float] | Mapping[str, float] = (0.7, 0.15, 0.15),
) -> Path:
    """Write ``images/case_XXX.png``, ``labels/case_XXX.png`` and ``datalist.json`` (split ->
    [{"image", "label"}], paths relative to `out_dir`, class names under "labels") atomically to
    `out_dir` (which must not exist or be empty). Returns the datalist path."""
    with atomic_folders(out_dir) as (tmp,):
        (tmp / "images").mkdir()
        (tmp / "labels").mkdir()
        items = []
        for i in range(num_images):
            image, label = make_synthetic_2d(shape, seed=(seed, i), rgb=rgb, num_classes=num_classes)
            name = f"case_{i:03d}.png"
            Image.fromarray(image).save(tmp / "images" / name)
            Image.fromarray(label).save(tmp / "labels" / name)
            items.append({"image": f"images/{name}", "label": f"labels/{name}"})
        labels = {k: v for k, v in ORGAN_CLASSES.items() if k <= num_classes}
        write_datalist(tmp / "datalist.json", split_cases(items, splits, seed), labels=labels)
    return Path(out_dir) / "datalist.json"


def make_synthetic_classification_dataset(
    out_dir: str | os.PathLike,
    num_per_class: int = 6,
    shape: Sequence[int] = (64, 64),
    seed: int = 0,
    rgb: bool = True,
    splits: Sequence[float] | Mapping[str, float] = (0.5, 0.25, 0.25),
) -> Path:
    """Write class folders ``<class>/img_XXX.png`` (classes `SHAPE_CLASSES`), ``labels.csv``
    (columns image, label: relative path, class name) and ``datalist.json`` (split -> [{"image",
    "label": class index}], split per class with `splits` so every class is in every split when
    there are enough images) atomically to `out_dir`. Returns the datalist path."""
    with atomic_folders(out_dir) as (tmp,):
        rows: list[tuple[str, str]] = []
        content: dict[str, list[dict]] = {}
        for index, name in enumerate(SHAPE_CLASSES):
            (tmp / name).mkdir()
            items = []
            for i in range(num_per_class):
                rel = f"{name}/img_{i:03d}.png"
                Image.fromarray(make_shape_image(name, shape, seed=(seed, index, i), rgb=rgb)).save(tmp / rel)
                rows.append((rel, name))
                items.append({"image": rel, "label": index})
            for split, chosen in split_cases(items, splits, seed).items():
                content.setdefault(split, []).extend(chosen)
        with open(tmp / "labels.csv", "w", newline="") as f:
            csv.writer(f).writerows([("image", "label"), *rows])
        write_datalist(tmp / "datalist.json", content, labels=dict(enumerate(SHAPE_CLASSES)))
    return Path(out_dir) / "datalist.json"


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m monaiseg.data.synthetic_2d --out DIR [--kind segmentation|classification]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output dataset directory (must not exist or be empty)")
    parser.add_argument("--kind", choices=("segmentation", "classification"), default="segmentation")
    parser.add_argument("--num", type=int, default=12, help="images (segmentation) or images per class")
    parser.add_argument("--shape", type=int, nargs=2, default=None, metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rgb", action="store_true", help="RGB segmentation images (default grey)")
    args = parser.parse_args(argv)
    if args.kind == "segmentation":
        print(make_synthetic_2d_dataset(args.out, args.num, args.shape or (128, 128), args.seed, rgb=args.rgb))
    else:
        print(make_synthetic_classification_dataset(args.out, args.num, args.shape or (64, 64), args.seed))


if __name__ == "__main__":
    main()
