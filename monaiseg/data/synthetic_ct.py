"""Synthetic abdominal CT volumes shaped like FLARE22, for tests and the demo.

Each case is a body ellipse (subcutaneous fat, muscle wall, visceral fat) with a vertebra,
the aorta and four organs drawn as smooth ellipsoids whose centres drift along z. Kidneys,
spleen and liver start and end inside the volume, so a key slice must be propagated.
Arrays are NIfTI (x, y, z) in RAS (+x = patient right, +y = anterior, +z = superior),
slices along z; images are int16 Hounsfield units, labels uint8 with FLARE22 values.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from monaiseg.data.datalist import save_nifti, split_cases, write_datalist

SYNTHETIC_CT_LABELS = {1: "liver", 2: "right kidney", 3: "spleen", 5: "aorta", 13: "left kidney"}

AIR_HU, SUBCUTANEOUS_FAT_HU, MUSCLE_HU, VISCERAL_FAT_HU, BONE_HU = -1000, -100, 40, -70, 700
AORTA = (5, 200, (-0.08, -0.22), 0.07)  # label, HU, centre (x, y), radius; spans the full z range
SPINE = ((0.0, -0.50), 0.13)  # centre (x, y), radius
# label, HU, centre (x, y), semi-axes (x, y), z centre, z half-length; in body coordinates
# (x, y in [-1, 1] across the image, z in [0, 1] along the volume). Painted in this order.
ORGANS = (
    (2, 150, (0.42, -0.30), (0.13, 0.15), 0.35, 0.20),  # right kidney
    (13, 150, (-0.42, -0.30), (0.13, 0.15), 0.40, 0.20),  # left kidney
    (3, 50, (-0.52, -0.02), (0.17, 0.24), 0.65, 0.20),  # spleen
    (1, 60, (0.40, 0.18), (0.36, 0.40), 0.65, 0.27),  # liver
)
Z_MARGIN = 0.08  # organs stay inside [Z_MARGIN, 1 - Z_MARGIN] of the z range
NOISE_HU = 12.0


def make_synthetic_ct(
    shape: Sequence[int] = (64, 64, 24), seed: int | Sequence[int] = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Return one case: ``image`` (X, Y, Z) int16 HU and ``label`` (X, Y, Z) uint8."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    nx, ny, nz = shape
    x = np.linspace(-1, 1, nx)[:, None, None]
    y = np.linspace(-1, 1, ny)[None, :, None]
    z = ((np.arange(nz) + 0.5) / nz)[None, None, :]

    body_scale = rng.uniform(0.95, 1.05)
    radius = np.hypot(x / (0.92 * body_scale), y / (0.72 * body_scale))  # (X, Y, 1)
    image = np.full(shape, AIR_HU, np.float32)
    image[np.broadcast_to(radius <= 1.0, shape)] = SUBCUTANEOUS_FAT_HU
    image[np.broadcast_to(radius <= 0.9, shape)] = MUSCLE_HU
    inside = np.broadcast_to(radius <= 0.82, shape)
    image[inside] = VISCERAL_FAT_HU
    label = np.zeros(shape, np.uint8)

    def jitter(value, amount):
        return np.asarray(value) + rng.uniform(-amount, amount, np.shape(value))

    (sx, sy), sr = SPINE
    spine = np.broadcast_to(np.hypot(x - sx, y - sy) <= sr * rng.uniform(0.9, 1.1), shape)
    image[spine] = BONE_HU + rng.uniform(-50, 50)

    value, hu, (ax, ay), ar = AORTA
    aorta = np.broadcast_to(np.hypot(x - jitter(ax, 0.02), y - jitter(ay, 0.02)) <= ar, shape)
    label[aorta & ~spine] = value
    image[label == value] = hu + rng.uniform(-10, 10)

    for value, hu, centre, axes, zc, zh in ORGANS:
        cx, cy = jitter(centre, 0.04)
        axes = np.asarray(axes) * rng.uniform(0.85, 1.15, 2)
        lo = max(jitter(zc, 0.05) - zh * rng.uniform(0.85, 1.15), Z_MARGIN)
        hi = min(jitter(zc, 0.05) + zh * rng.uniform(0.85, 1.15), 1 - Z_MARGIN)
        zc, zh = (lo + hi) / 2, (hi - lo) / 2
        t = (z - zc) / zh  # -1 .. 1 over the organ's z extent
        dx, dy = rng.uniform(-0.1, 0.1, 2)  # the centre drifts by this much along z
        organ = ((x - cx - dx * t) / axes[0]) ** 2 + ((y - cy - dy * t) / axes[1]) ** 2
        organ = (organ + t**2 <= 1) & inside & ~spine & (label == 0)
        label[organ] = value
        image[organ] = hu + rng.uniform(-5, 5)

    image += rng.normal(0, NOISE_HU, shape).astype(np.float32)
    return np.clip(np.rint(image), -1024, 3071).astype(np.int16), label


def make_synthetic_ct_dataset(
    out_dir: str | os.PathLike,
    num_cases: int = 6,
    shape: Sequence[int] = (64, 64, 24),
    spacing: Sequence[float] = (1.5, 1.5, 3.0),
    seed: int = 0,
    splits: Mapping[str, int] | Mapping[str, float] | Sequence[float] = (0.7, 0.15, 0.15),
) -> Path:
    """Write ``imagesTr/case_XXX.nii.gz``, ``labelsTr/case_XXX.nii.gz`` and ``datalist.json``.

    ``splits`` maps split names to case counts (ints summing to ``num_cases``, assigned in
    case order) or is fractions for :func:`split_cases`. Returns the datalist path.
    """
    out_dir = Path(out_dir)
    (out_dir / "imagesTr").mkdir(parents=True, exist_ok=True)
    (out_dir / "labelsTr").mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(num_cases):
        image, label = make_synthetic_ct(shape, seed=(seed, i))
        item = {"image": f"imagesTr/case_{i:03d}.nii.gz", "label": f"labelsTr/case_{i:03d}.nii.gz"}
        save_nifti(image, spacing, out_dir / item["image"])
        save_nifti(label, spacing, out_dir / item["label"])
        items.append(item)

    if isinstance(splits, Mapping) and all(isinstance(v, int) for v in splits.values()):
        if sum(splits.values()) != num_cases:
            raise ValueError(f"split counts {dict(splits)} do not sum to num_cases={num_cases}")
        bounds = np.cumsum([0, *splits.values()])
        split_items = {name: items[a:b] for name, a, b in zip(splits, bounds[:-1], bounds[1:])}
    else:
        split_items = split_cases(items, splits, seed=seed)
    return write_datalist(out_dir / "datalist.json", split_items, labels=SYNTHETIC_CT_LABELS)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m monaiseg.data.synthetic_ct --out DIR [--num_cases N] ...``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output dataset directory")
    parser.add_argument("--num_cases", type=int, default=6)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 64, 24), metavar=("X", "Y", "Z"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(make_synthetic_ct_dataset(args.out, args.num_cases, args.shape, seed=args.seed))


if __name__ == "__main__":
    main()
