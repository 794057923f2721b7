"""Synthetic volumes shaped like Synapse CT and ACDC cine MRI, for tests and the demo.

``kind="synapse"``: an abdomen (body ellipse, spine) in Hounsfield units with the 8 Synapse organs
as smooth ellipsoids of distinct HU, with the Synapse class ids (1 spleen ... 8 pancreas).
``kind="acdc"``: a short-axis stack of a heart: LV blood pool (3), myocardium ring (2) and an RV
crescent (1), shrinking towards the apex, in MR-like intensities with a smooth bias field.
Arrays are (X, Y, Z), slices along z. The volumes go through the converters' normalisation
(HU window / per-volume min-max) and layout writer, so the output is the layout of
:mod:`monaiseg.data.synapse` with the real label names.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from monaiseg.data.acdc import ACDC_LABELS, normalize_mr
from monaiseg.data.synapse import SYNAPSE_LABELS, normalize_ct, write_slice_dataset

SPACING = {"synapse": (0.8, 0.8, 3.0), "acdc": (1.5, 1.5, 8.0)}  # mm, typical of each dataset
# Synapse: class id, HU, centre (x, y), semi-axes (x, y), z centre, z half-length; painted in this
# order (later organs win); x, y in [-1, 1] across the image (+x patient right), z in [0, 1]
ABDOMEN_ORGANS = (
    (5, 60, (0.38, 0.12), (0.34, 0.38), 0.60, 0.32),  # liver
    (4, 5, (0.22, 0.36), (0.10, 0.12), 0.45, 0.18),  # gallbladder
    (1, 120, (-0.50, -0.08), (0.16, 0.22), 0.62, 0.22),  # spleen
    (6, 25, (-0.22, 0.28), (0.22, 0.18), 0.62, 0.22),  # stomach
    (2, 160, (0.40, -0.36), (0.12, 0.15), 0.40, 0.22),  # right kidney
    (3, 180, (-0.40, -0.36), (0.12, 0.15), 0.45, 0.22),  # left kidney
    (8, 90, (0.0, -0.04), (0.30, 0.08), 0.50, 0.16),  # pancreas
)
AORTA = (7, 220, (0.0, -0.30), 0.07)  # class id, HU, centre, radius; full z range


def _grid(shape: Sequence[int]):
    nx, ny, nz = shape
    return (
        np.linspace(-1, 1, nx)[:, None, None],
        np.linspace(-1, 1, ny)[None, :, None],
        ((np.arange(nz) + 0.5) / nz)[None, None, :],
    )


def make_abdomen(shape: Sequence[int] = (64, 64, 12), seed: int | Sequence[int] = 0) -> tuple[np.ndarray, np.ndarray]:
    """One Synapse-like case: image (X, Y, Z) float32 HU, label (X, Y, Z) uint8 class ids 0-8."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    x, y, z = _grid(shape)
    radius = np.broadcast_to(np.hypot(x / 0.92, y / 0.72) * rng.uniform(0.95, 1.05), shape)
    image = np.select([radius <= 0.82, radius <= 0.9, radius <= 1.0], [-70.0, 40.0, -100.0], -1000.0)
    label = np.zeros(shape, np.uint8)
    spine = np.broadcast_to(np.hypot(x, y + 0.55) <= 0.12, shape)
    image[spine] = 700.0
    value, _, (ax, ay), ar = AORTA
    label[np.broadcast_to(np.hypot(x - ax, y - ay) <= ar, shape)] = value
    for value, _hu_organ, (cx, cy), (sx, sy), zc, zh in ABDOMEN_ORGANS:
        cx, cy = np.array([cx, cy]) + rng.uniform(-0.04, 0.04, 2)
        sx, sy = np.array([sx, sy]) * rng.uniform(0.85, 1.15, 2)
        zc, zh = zc + rng.uniform(-0.05, 0.05), zh * rng.uniform(0.9, 1.1)
        t = (z - zc) / zh
        organ = ((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2 + t**2 <= 1
        label[organ & (radius <= 0.82) & ~spine] = value
    for value, hu_organ, *_ in (*ABDOMEN_ORGANS, AORTA):
        image[label == value] = hu_organ + rng.uniform(-5, 5)
    image += rng.normal(0, 12, shape)
    return image.astype(np.float32), label


def make_heart(shape: Sequence[int] = (64, 64, 12), seed: int | Sequence[int] = 0) -> tuple[np.ndarray, np.ndarray]:
    """One ACDC-like frame: image (X, Y, Z) float32 MR intensity, label (X, Y, Z) uint8 (1 RV, 2 Myo, 3 LV)."""
    rng = np.random.default_rng(seed)
    shape = tuple(shape)
    x, y, z = _grid(shape)
    cx, cy = rng.uniform(-0.08, 0.08, 2)
    base, apex = rng.uniform(0.05, 0.15), rng.uniform(0.85, 0.95)
    t = np.clip((z - base) / (apex - base), 0, 1)  # 0 at the base, 1 at the apex
    inside = (z >= base) & (z <= apex)
    lv_r = rng.uniform(0.22, 0.28) * (1 - 0.6 * t)
    wall = rng.uniform(0.08, 0.11) * (1 - 0.3 * t)
    r_lv = np.hypot(x - cx, y - cy)
    rv_r = rng.uniform(0.30, 0.36) * (1 - t)
    r_rv = np.hypot((x - cx + 0.32) / 1.2, y - cy)  # RV on the -x side of the LV, oval
    label = np.zeros(shape, np.uint8)
    label[np.broadcast_to((r_rv <= rv_r) & (r_lv > lv_r + wall) & inside, shape)] = 1
    label[np.broadcast_to((r_lv <= lv_r + wall) & inside, shape)] = 2
    label[np.broadcast_to((r_lv <= lv_r) & inside, shape)] = 3
    body = np.broadcast_to(np.hypot(x / 0.95, y / 0.8) <= 1.0, shape)
    image = np.where(body, 90.0, 5.0)
    image[np.broadcast_to(np.hypot((x + 0.55) / 0.3, y / 0.5) <= 1.0, shape) & (label == 0)] = 20.0  # lung
    for value, intensity in ((1, 230.0), (2, 70.0), (3, 260.0)):
        image[label == value] = intensity * rng.uniform(0.95, 1.05)
    bias = 1 + 0.15 * (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1))
    image = image * bias + rng.normal(0, 8, shape)
    return np.clip(image, 0, None).astype(np.float32), label


def make_synthetic_organs_dataset(
    root: str | os.PathLike,
    kind: str = "synapse",
    train_cases: int = 3,
    test_cases: int = 2,
    shape: Sequence[int] = (64, 64, 12),
    seed: int = 0,
) -> Path:
    """Write ``train_cases`` volumes as training slices and ``test_cases`` as test volumes to ``root``
    (must not exist or be empty) in the converters' layout; returns the datalist path.

    Case names: ``case0001``... (synapse) or ``patient001_frame01``... (acdc).
    """
    if kind not in SPACING:
        raise ValueError(f"kind must be one of {sorted(SPACING)}, got {kind!r}")
    if train_cases < 1 or test_cases < 1:
        raise ValueError(f"need at least one training and one test case, got {train_cases} and {test_cases}")
    names = [
        f"case{i:04d}" if kind == "synapse" else f"patient{i:03d}_frame01"
        for i in range(1, train_cases + test_cases + 1)
    ]
    affine = np.diag([*SPACING[kind], 1.0])

    def load(case: str):
        index = names.index(case)
        if kind == "synapse":
            image, label = make_abdomen(shape, seed=(seed, index))
            return normalize_ct(image), label, affine
        image, label = make_heart(shape, seed=(seed, index))
        return normalize_mr(image, case), label, affine

    splits = {"training": names[:train_cases], "test": names[train_cases:]}
    labels = SYNAPSE_LABELS if kind == "synapse" else ACDC_LABELS
    return write_slice_dataset(root, splits, load, labels)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m monaiseg.data.synthetic_organs --out DIR [--kind synapse|acdc] ...``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="dataset folder to create")
    parser.add_argument("--kind", choices=sorted(SPACING), default="synapse")
    parser.add_argument("--train_cases", type=int, default=3)
    parser.add_argument("--test_cases", type=int, default=2)
    parser.add_argument("--shape", type=int, nargs=3, default=(64, 64, 12), metavar=("X", "Y", "Z"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(make_synthetic_organs_dataset(args.out, args.kind, args.train_cases, args.test_cases, args.shape, args.seed))


if __name__ == "__main__":
    main()
