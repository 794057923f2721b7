"""Synthetic endoscopic scenes with surgical instruments (tests, tiny configs, benchmarks).

Each frame: a tissue-like background (reddish, smooth random texture with bright specular
spots) and 1-3 instruments of different classes, each a shaft entering from the image border
(a thick bar) ending in a tip (jaws). Class c has its own colour, stripe pattern, shaft width
and tip shape, so a tiny model can tell the classes apart. Within a sequence the instrument
classes are fixed and the instruments move a little from frame to frame (a video).

Layout written by `make_synthetic_surgical_dataset` (the one the EndoVis converters write):
`frames/<seq>/<frame:05d>.png` RGB uint8, `masks/<seq>/<frame:05d>.png` uint8 class ids
(0 background), `datalist.json` `{"classes": names, "training": [...], "validation": [...]}`,
items `{"image", "label", "sequence", "frame"}`; the last sequence(s) are the validation split.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from monaiseg.data.endovis import ENDOVIS2018_CLASSES
from monaiseg.utils.files import atomic_folders

# RGB colour of each class (silver, dark plastic, yellow, cyan, blue, green, orange); more classes cycle
CLASS_COLOURS = (
    (200, 200, 210),
    (40, 40, 50),
    (170, 170, 40),
    (90, 200, 230),
    (60, 80, 210),
    (90, 200, 90),
    (230, 130, 40),
)


def _tissue(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(H, W, 3) float tissue: red base, smooth multi-scale texture, specular highlights."""
    texture = np.zeros((h, w), np.float32)
    for i, s in enumerate((4, 8, 16)):
        noise = rng.standard_normal((s, s)).astype(np.float32)
        texture += cv2.resize(noise, (w, h), interpolation=cv2.INTER_CUBIC) / (i + 1)
    base = np.array([175.0, 70.0, 70.0]) + rng.uniform(-15, 15, 3)
    image = base[None, None] * (1 + 0.15 * texture[..., None])
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(rng.integers(2, 5)):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(1, 3) * min(h, w) / 64
        image += 80 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))[..., None]
    return image


def _instrument(cls: int, h: int, w: int, entry: float, angle: float, length: float) -> np.ndarray:
    """Binary (H, W) mask of an instrument of class `cls` (1-based): a shaft entering from the
    left / right border at height fraction `entry`, pointing at `angle`, `length` of the width."""
    scale = min(h, w) / 64
    width = int(round((3 + cls % 3) * scale))
    x0 = 0 if np.cos(angle) >= 0 else w - 1
    y0 = entry * h
    x1, y1 = x0 + np.cos(angle) * length * w, y0 + np.sin(angle) * length * w
    mask = np.zeros((h, w), np.uint8)
    cv2.line(mask, (int(x0), int(y0)), (int(x1), int(y1)), (1,), max(width, 1))
    tip = int(round((4 + 2 * (cls % 2)) * scale))
    for spread in (-0.5, 0.5) if cls % 2 else (0.0,):  # open jaws or a single blunt tip
        a = angle + spread
        end = (int(x1 + np.cos(a) * tip), int(y1 + np.sin(a) * tip))
        cv2.line(mask, (int(x1), int(y1)), end, (1,), max(width - 1, 1))
    if cls % 3 == 0:  # a round head (probe / clip applier like)
        cv2.circle(mask, (int(x1), int(y1)), max(int(tip * 0.7), 1), (1,), -1)
    return mask.astype(bool)


def _paint(image: np.ndarray, mask: np.ndarray, cls: int, rng: np.random.Generator) -> None:
    """Colour the instrument: class colour, class-specific stripe frequency, shading noise."""
    h, w = mask.shape
    yy, xx = np.mgrid[0:h, 0:w]
    period = 3 + 2 * ((cls - 1) % 4)
    stripes = 1 + 0.2 * np.sign(np.sin(2 * np.pi * (xx + yy) / period))
    colour = np.array(CLASS_COLOURS[(cls - 1) % len(CLASS_COLOURS)], np.float64)
    shade = stripes * rng.uniform(0.9, 1.1) + rng.normal(0, 0.03, (h, w))
    image[mask] = colour[None] * shade[mask][:, None]


def make_synthetic_surgical_frame(
    classes: Sequence[int], h: int, w: int, rng: np.random.Generator, poses: Sequence[tuple[float, float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """One frame: image uint8 (H, W, 3), mask uint8 (H, W) class ids; instrument k of class
    `classes[k]` at pose `poses[k]` = (entry height fraction, angle, length fraction)."""
    image = _tissue(rng, h, w)
    mask = np.zeros((h, w), np.uint8)
    for cls, (entry, angle, length) in zip(classes, poses):
        region = _instrument(cls, h, w, entry, angle, length)
        _paint(image, region, cls, rng)
        mask[region] = cls
    image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    return image, mask


def make_synthetic_surgical_dataset(
    root: str | Path,
    sequences: int = 3,
    frames: int = 4,
    size: tuple[int, int] = (64, 80),
    num_classes: int = 7,
    seed: int = 0,
    validation_sequences: int = 1,
) -> Path:
    """Write the layout of the module docstring to `root` (must not exist or be empty),
    atomically; deterministic for `seed`. Sequences take 1-3 classes in turn from a seeded
    permutation, so all classes appear once there are enough sequences. Returns `root`."""
    if sequences < 2 or not 1 <= validation_sequences < sequences:
        raise ValueError(
            f"need >= 2 sequences and 1..{sequences - 1} validation sequences, "
            f"got {sequences} and {validation_sequences}"
        )
    if num_classes < 1 or frames < 1:
        raise ValueError(f"num_classes and frames must be >= 1, got {num_classes} and {frames}")
    h, w = size
    rng = np.random.default_rng(seed)
    names = list(ENDOVIS2018_CLASSES[:num_classes]) + [f"instrument {c}" for c in range(8, num_classes + 1)]
    order, offset = list(rng.permutation(num_classes) + 1), 0
    items: dict[str, list[dict]] = {"training": [], "validation": []}
    with atomic_folders(root) as (tmp,):
        for s in range(sequences):
            seq = f"seq_{s + 1}"
            count = int(rng.integers(1, min(3, num_classes) + 1))
            classes = list(dict.fromkeys(order[(offset + k) % num_classes] for k in range(count)))
            offset += count
            poses = [
                (rng.uniform(0.2, 0.8), rng.uniform(-0.6, 0.6) + (np.pi if k % 2 else 0), rng.uniform(0.35, 0.6))
                for k in range(len(classes))
            ]
            (tmp / "frames" / seq).mkdir(parents=True)
            (tmp / "masks" / seq).mkdir(parents=True)
            for f in range(frames):
                moved = [(e + 0.02 * f, a + 0.05 * f, ln) for e, a, ln in poses]
                image, mask = make_synthetic_surgical_frame(classes, h, w, rng, moved)
                Image.fromarray(image).save(tmp / "frames" / seq / f"{f:05d}.png")
                Image.fromarray(mask).save(tmp / "masks" / seq / f"{f:05d}.png")
                split = "validation" if s >= sequences - validation_sequences else "training"
                items[split].append(
                    {
                        "image": f"frames/{seq}/{f:05d}.png",
                        "label": f"masks/{seq}/{f:05d}.png",
                        "sequence": seq,
                        "frame": f,
                    }
                )
        (tmp / "datalist.json").write_text(json.dumps({"classes": names, **items}, indent=4) + "\n")
    return Path(root)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m monaiseg.data.synthetic_surgical DST [--sequences N --frames N --size H W]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dst", help="output dataset directory (must not exist or be empty)")
    parser.add_argument("--sequences", type=int, default=3)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--size", type=int, nargs=2, default=(64, 80), metavar=("H", "W"))
    parser.add_argument("--num-classes", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(
        make_synthetic_surgical_dataset(
            args.dst, args.sequences, args.frames, tuple(args.size), args.num_classes, args.seed
        )
    )


if __name__ == "__main__":
    main()
