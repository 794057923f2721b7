"""Synthetic blood smears and cell time-lapse videos, for tests and the BloodCellSAM2 demo.

A smear is a pinkish plasma background with pale red-cell discs (background in the label, as in
the WBC and LISC masks) and white cells: a lilac/blue cytoplasm and a purple nucleus whose shape
tells the type (:data:`monaiseg.data.cells.CELL_TYPES`): 1 neutrophil three lobes, 2 lymphocyte
one large round nucleus in a small cell, 3 monocyte a kidney shape in a large cell, 4 eosinophil
two lobes and orange granules, 5 basophil a dark irregular nucleus under dark granules. Some white
cells touch (share a border). A video moves white cells by a smooth random walk; two of them
touch, one divides (its track ends, two daughters start with new ids and that parent).
Images are (H, W, 3) uint8 RGB with rows first, labels (H, W) uint16.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from monaiseg.data.cells import CELL_TYPES, save_case, write_cell_datalist
from monaiseg.data.datalist import split_cases
from monaiseg.utils.files import atomic_folders

BACKGROUND_RGB = (236, 208, 212)
RED_CELL_RGB = (222, 148, 158)
CYTOPLASM_RGB = {1: (228, 200, 226), 2: (188, 200, 236), 3: (206, 198, 228), 4: (242, 190, 170), 5: (210, 180, 222)}
NUCLEUS_RGB = {1: (112, 60, 152), 2: (86, 46, 138), 3: (128, 88, 168), 4: (118, 62, 142), 5: (58, 24, 92)}
GRANULE_RGB = {4: (226, 112, 78), 5: (70, 30, 100)}  # eosinophil, basophil
CELL_SIZE = {1: 1.0, 2: 0.8, 3: 1.2, 4: 1.05, 5: 0.95}  # radius relative to the white-cell radius
WHITE_RADIUS, RED_RADIUS = 0.1, 0.065  # fractions of the shorter image side
MIN_ASPECT, WOBBLE = 0.92, 0.03  # smallest minor/major axis ratio; largest radial outline deviation
TOUCH = 0.87  # centre distance of touching cells in units of r1 + r2: < MIN_ASPECT * (1 - WOBBLE), so they overlap


@dataclass(frozen=True)
class Cell:
    """A white cell: centre (row, col) and radius in pixels, type 1..5, orientation and outline shape."""

    cy: float
    cx: float
    r: float
    cell_type: int
    angle: float
    aspect: float
    harmonics: tuple[tuple[float, float], ...]  # (amplitude, phase) of the outline harmonics 2, 3, 4


def _random_cell(rng: np.random.Generator, cy: float, cx: float, r: float, cell_type: int) -> Cell:
    amplitudes = rng.uniform(0, WOBBLE / 3, 3)
    return Cell(
        cy,
        cx,
        r,
        cell_type,
        rng.uniform(0, np.pi),
        rng.uniform(MIN_ASPECT, 1.0),
        tuple(zip(amplitudes, rng.uniform(0, 2 * np.pi, 3), strict=True)),
    )


def _ellipse(yy, xx, cy, cx, ry, rx, angle, harmonics=()) -> np.ndarray:
    """Pixels inside a rotated ellipse whose radius varies by ``1 + sum a cos(k theta + phi)``."""
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    radius = np.hypot(u / rx, v / ry)
    theta = np.arctan2(v, u)
    outline = 1 + sum(a * np.cos(k * theta + phi) for k, (a, phi) in enumerate(harmonics, start=2))
    return radius <= outline


def _nucleus(yy, xx, cell: Cell) -> np.ndarray:
    """The nucleus of ``cell`` (bool, image shape); its shape depends on the cell type."""
    cy, cx, r, a = cell.cy, cell.cx, cell.r, cell.angle
    along = np.array([np.sin(a), np.cos(a)])  # (row, col) unit vector of the cell's orientation

    def disc(offset_along, offset_across, radius):
        dy, dx = offset_along * along + offset_across * along[::-1] * np.array([-1, 1])
        return np.hypot(yy - cy - dy * r, xx - cx - dx * r) <= radius * r

    if cell.cell_type == 1:  # neutrophil: three lobes on an arc
        return disc(-0.38, 0.12, 0.27) | disc(0.0, -0.1, 0.28) | disc(0.38, 0.12, 0.27)
    if cell.cell_type == 2:  # lymphocyte: one large round nucleus, slightly off-centre
        return disc(0.08, 0.0, 0.74)
    if cell.cell_type == 3:  # monocyte: kidney shape, an ellipse with a bite out of one side
        return _ellipse(yy, xx, cy, cx, 0.5 * r, 0.66 * r, a) & ~disc(0.0, 0.55, 0.34)
    if cell.cell_type == 4:  # eosinophil: two lobes
        return disc(-0.33, 0.0, 0.33) | disc(0.33, 0.0, 0.33)
    return _ellipse(yy, xx, cy, cx, 0.6 * r, 0.66 * r, a, ((0.12, 0.3), (0.1, 1.9), (0.08, 4.0)))  # basophil


def _paint_cell(canvas: np.ndarray, labels: np.ndarray, cell: Cell, label: int, rng: np.random.Generator) -> None:
    """Draw ``cell`` over ``canvas`` (H, W, 3) float and write ``label`` into ``labels`` (H, W) where it lies."""
    yy, xx = np.mgrid[: labels.shape[0], : labels.shape[1]]
    body = _ellipse(yy, xx, cell.cy, cell.cx, cell.r * cell.aspect, cell.r, cell.angle, cell.harmonics)
    canvas[body] = CYTOPLASM_RGB[cell.cell_type]
    if cell.cell_type in GRANULE_RGB:
        granules = body & (rng.random(body.shape) < 0.25)
        canvas[granules] = GRANULE_RGB[cell.cell_type]
    nucleus = _nucleus(yy, xx, cell) & body
    canvas[nucleus] = np.asarray(NUCLEUS_RGB[cell.cell_type]) * rng.uniform(0.9, 1.1, (int(nucleus.sum()), 1))
    labels[body] = label


def _background(shape: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Plasma with slow shading and pale red-cell discs (central pallor), (H, W, 3) float."""
    height, width = shape
    shading = cv2.GaussianBlur(rng.normal(0, 1, (height, width)), (0, 0), min(shape) / 8)
    canvas = np.asarray(BACKGROUND_RGB, float) * (1 + 0.03 * shading / (shading.std() + 1e-6))[..., None]
    yy, xx = np.mgrid[:height, :width]
    radius = RED_RADIUS * min(shape)
    for _ in range(int(0.3 * height * width / (np.pi * radius**2))):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), radius * rng.uniform(0.85, 1.15)
        distance = np.hypot(yy - cy, xx - cx)
        canvas[distance <= r] = RED_CELL_RGB
        canvas[distance <= 0.45 * r] = (np.asarray(RED_CELL_RGB) + BACKGROUND_RGB) / 2
    return canvas


def _finish(canvas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Optical blur and sensor noise; float canvas -> uint8."""
    blurred = cv2.GaussianBlur(canvas, (0, 0), 0.8)
    return np.clip(np.rint(blurred + rng.normal(0, 3.0, canvas.shape)), 0, 255).astype(np.uint8)


def _fits(cy: float, cx: float, r: float, shape: Sequence[int]) -> bool:
    return r + 1 <= cy <= shape[0] - r - 2 and r + 1 <= cx <= shape[1] - r - 2


def _place_cells(
    shape: Sequence[int], cell_types: Sequence[int], rng: np.random.Generator, tries: int = 200
) -> list[Cell]:
    """Non-overlapping white cells inside the image; every odd-numbered one touches the one before it
    (when half the tries find no room there, it is placed freely)."""
    cells: list[Cell] = []
    base = WHITE_RADIUS * min(shape)
    for i, cell_type in enumerate(cell_types):
        r = base * CELL_SIZE[cell_type] * rng.uniform(0.9, 1.1)
        for attempt in range(tries):
            partner = cells[-1] if i % 2 == 1 and cells and attempt < tries // 2 else None
            if partner is not None:
                direction = rng.uniform(0, 2 * np.pi)
                distance = TOUCH * (r + partner.r)
                cy, cx = partner.cy + distance * np.sin(direction), partner.cx + distance * np.cos(direction)
            else:
                cy, cx = rng.uniform(r + 1, shape[0] - r - 2), rng.uniform(r + 1, shape[1] - r - 2)
            clear = all(np.hypot(cy - c.cy, cx - c.cx) >= r + c.r + 2 for c in cells if c is not partner)
            if _fits(cy, cx, r, shape) and clear:
                cells.append(_random_cell(rng, cy, cx, r, cell_type))
                break
    return cells


def make_smear(
    shape: Sequence[int] = (128, 128),
    num_cells: int = 6,
    seed: int | Sequence[int] = 0,
    cell_type: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """One smear: image (H, W, 3) uint8, instances (H, W) uint16 (0 background, 1..N) and the
    type of cell 1..N. ``cell_type`` gives every white cell that type (default: random types).
    Fewer than ``num_cells`` cells are drawn only when they do not fit in the image.
    """
    rng = np.random.default_rng(seed)
    types = [cell_type or int(t) for t in rng.integers(1, len(CELL_TYPES) + 1, num_cells)]
    cells = _place_cells(shape, types, rng)
    canvas = _background(shape, rng)
    instances = np.zeros(shape, np.uint16)
    for label, cell in enumerate(cells, start=1):
        _paint_cell(canvas, instances, cell, label, rng)
    return _finish(canvas, rng), instances, [cell.cell_type for cell in cells]


def _separate(cells: dict[int, Cell], shape: Sequence[int]) -> dict[int, Cell]:
    """Push overlapping cells apart to their touching distance and keep them inside the image."""
    cells = dict(cells)
    for _ in range(4):
        ids = sorted(cells)
        for n, a in enumerate(ids):
            for b in ids[n + 1 :]:
                ca, cb = cells[a], cells[b]
                dy, dx = cb.cy - ca.cy, cb.cx - ca.cx
                distance, target = np.hypot(dy, dx), TOUCH * (ca.r + cb.r)
                if distance < target:
                    uy, ux = (dy / distance, dx / distance) if distance > 1e-6 else (0.0, 1.0)
                    push = (target - distance) / 2
                    cells[a] = replace(ca, cy=ca.cy - push * uy, cx=ca.cx - push * ux)
                    cells[b] = replace(cb, cy=cb.cy + push * uy, cx=cb.cx + push * ux)
        for k, c in cells.items():
            cells[k] = replace(
                c,
                cy=float(np.clip(c.cy, c.r + 1, shape[0] - c.r - 2)),
                cx=float(np.clip(c.cx, c.r + 1, shape[1] - c.r - 2)),
            )
    return cells


def make_cell_video(
    shape: Sequence[int] = (96, 96),
    num_frames: int = 8,
    num_cells: int = 4,
    seed: int | Sequence[int] = 0,
) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """A time-lapse: frames (T, H, W, 3) uint8, masks (T, H, W) uint16 track ids and parents
    {daughter id: mother id}. Cells 1 and 2 start touching (if there is room) and drift together;
    the last initial cell divides at a random frame in the middle third into ids ``num_cells + 1``
    and ``num_cells + 2``, born touching. Cells never cover each other, so every track is continuous.
    """
    if num_cells < 2 or num_frames < 3:
        raise ValueError(f"make_cell_video needs at least 2 cells and 3 frames, got {num_cells} and {num_frames}")
    rng = np.random.default_rng(seed)
    types = [int(t) for t in rng.integers(1, len(CELL_TYPES) + 1, num_cells)]
    placed = _place_cells(shape, types, rng)
    if len(placed) < num_cells:
        raise ValueError(f"make_cell_video: {num_cells} cells do not fit in a {shape[0]}x{shape[1]} frame")
    cells = dict(enumerate(placed, start=1))
    velocity = {i: rng.normal(0, 1.0, 2) for i in cells}
    velocity[2] = velocity[1]  # the touching pair moves together
    mother = num_cells
    division = int(rng.integers(max(1, num_frames // 3), max(2, 2 * num_frames // 3) + 1))
    background = _background(shape, rng)
    frames = np.zeros((num_frames, *shape, 3), np.uint8)
    masks = np.zeros((num_frames, *shape), np.uint16)
    parents: dict[int, int] = {}
    for t in range(num_frames):
        if t > 0:
            shared = 0.8 * velocity[1] + rng.normal(0, 0.6, 2)
            for k, cell in cells.items():
                velocity[k] = shared if k in (1, 2) else 0.8 * velocity[k] + rng.normal(0, 0.6, 2)
                cells[k] = replace(
                    cell,
                    cy=cell.cy + velocity[k][0],
                    cx=cell.cx + velocity[k][1],
                    angle=cell.angle + rng.normal(0, 0.05),
                )
        if t == division:
            m, v = cells.pop(mother), velocity.pop(mother)
            axis = rng.uniform(0, 2 * np.pi)
            unit = np.array([np.sin(axis), np.cos(axis)])
            r = 0.8 * m.r
            for sign, daughter in ((-1, num_cells + 1), (1, num_cells + 2)):
                cy, cx = np.array([m.cy, m.cx]) + sign * TOUCH * r * unit
                cells[daughter] = _random_cell(rng, cy, cx, r, m.cell_type)
                velocity[daughter] = v + sign * 0.7 * unit
                parents[daughter] = mother
        cells = _separate(cells, shape)
        canvas = background.copy()
        for k in sorted(cells):
            _paint_cell(canvas, masks[t], cells[k], k, rng)
        frames[t] = _finish(canvas, rng)
    return frames, masks, parents


def make_generic_scene(
    shape: Sequence[int] = (128, 128), num_objects: int = 4, seed=0
) -> tuple[np.ndarray, np.ndarray]:
    """A non-cell scene (the "mixed generic data" of BloodCellSAM2 stage 1): coloured rectangles
    and ellipses on a smooth background. Returns image (H, W, 3) uint8, instances (H, W) uint16."""
    rng = np.random.default_rng(seed)
    height, width = shape
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.uniform(60, 200, size=3)
    image = base + rng.uniform(-40, 40, size=3) * (xx / width)[..., None]
    instances = np.zeros(shape, np.uint16)
    for label in range(1, num_objects + 1):
        cy, cx = rng.uniform(0.2, 0.8) * height, rng.uniform(0.2, 0.8) * width
        ry, rx = rng.uniform(0.06, 0.16) * height, rng.uniform(0.06, 0.16) * width
        if rng.random() < 0.5:
            mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            mask = (np.abs(yy - cy) <= ry) & (np.abs(xx - cx) <= rx)
        image[mask] = rng.uniform(0, 255, size=3)
        instances[mask] = label
    image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    return image, instances


def make_synthetic_cell_dataset(
    out_dir: str | os.PathLike,
    num_images: int = 20,
    num_videos: int = 3,
    shape: Sequence[int] = (128, 128),
    video_frames: int = 8,
    seed: int = 0,
    splits: Sequence[float] | Mapping[str, float] | None = None,
    num_generic: int = 4,
) -> Path:
    """Write smears (``images/``, ``labels/``), CTC videos (``videos/``) and ``datalist.json`` to ``out_dir``.

    Smear ``i`` holds white cells of type ``i % 5 + 1`` (its ``cell_type``). Images and videos are
    split separately with the ``splits`` fractions (default 70/15/15); the video splits are under
    ``"<split>_videos"``; ``num_generic`` non-cell scenes (`make_generic_scene`) are listed under
    ``"training_generic"``. Returns the datalist path.
    """
    from monaiseg.data.ctc import write_ctc_gt

    fractions = (0.7, 0.15, 0.15) if splits is None else splits
    with atomic_folders(out_dir) as (tmp,):
        items = []
        for i in range(num_images):
            cell_type = i % len(CELL_TYPES) + 1
            image, instances, _ = make_smear(shape, seed=(seed, 0, i), cell_type=cell_type)
            items.append(save_case(tmp, f"smear_{i:03d}", image, instances, cell_type))
        content = split_cases(items, fractions, seed) if items else {}
        videos = []
        for j in range(num_videos):
            frames, masks, parents = make_cell_video(shape, video_frames, seed=(seed, 1, j))
            name = f"{j + 1:02d}"
            write_ctc_gt(tmp / "videos", name, frames, masks, parents)
            videos.append({"image": f"videos/{name}", "label": f"videos/{name}_GT/TRA"})
        if videos:
            content |= {f"{split}_videos": v for split, v in split_cases(videos, fractions, seed).items()}
        generic = []
        for k in range(num_generic):
            image, instances = make_generic_scene(shape, seed=(seed, 2, k))
            generic.append(save_case(tmp, f"generic_{k:03d}", image, instances, cell_type=0))  # 0: not a cell
        if generic:
            content["training_generic"] = generic
        write_cell_datalist(tmp / "datalist.json", content)
    return Path(out_dir) / "datalist.json"


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m monaiseg.data.synthetic_cells --out DIR [--num_images N] ...``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output dataset directory (must not exist or be empty)")
    parser.add_argument("--num_images", type=int, default=20)
    parser.add_argument("--num_videos", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    parser.add_argument("--video_frames", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_generic", type=int, default=4)
    args = parser.parse_args(argv)
    print(
        make_synthetic_cell_dataset(
            args.out,
            args.num_images,
            args.num_videos,
            args.shape,
            args.video_frames,
            args.seed,
            num_generic=args.num_generic,
        )
    )


if __name__ == "__main__":
    main()
