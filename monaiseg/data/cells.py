"""Blood-cell datasets (BloodCellSAM2, docs/methods.md#bloodcellsam2) converted to one instance-map format.

Output layout (``out_dir``)::

    images/<id>.png     RGB uint8
    labels/<id>.png     uint16 instance map: 0 background, 1..N one id per cell
    datalist.json       {"training": [{"image": "images/<id>.png", "label": "labels/<id>.png",
                                       "cell_type": int}, ...], "validation": [...], "testing": [...],
                         "cell_types": {"1": "neutrophil", ...}}

Optional video keys (``"training_videos"``, ...) list Cell Tracking Challenge sequences
``{"image": "videos/01", "label": "videos/01_GT/TRA"}`` (see :mod:`monaiseg.data.ctc`).
Both sources give semantic masks, so cells are their connected components (touching cells merge).
Every dataset is built in a temporary sibling folder renamed onto ``out_dir`` at the end, so an
error leaves nothing behind; the source folder is only read.

Sources:

* WBC "Dataset 2" (Zheng et al., Micron 2018, CellaVision images): ``NNN.bmp`` 300x300 RGB,
  ``NNN.png`` mask 0 background (red cells included) / 128 cytoplasm / 255 nucleus,
  ``class_labels.csv`` (``image ID,class`` with 1 neutrophil, 2 lymphocyte, 3 monocyte,
  4 eosinophil, 5 basophil).
* LISC (Rezatofighi & Soltanian-Zadeh, CMIG 2011), the ``LISC Database.zip`` release::

      LISC Database/
        Main Dataset/{Baso,eosi,lymp,mixt,mono,neut}/<n>.bmp               720x576 RGB
        Ground Truth Segmentation/<class>/areaforexpert1/<n>_expert.bmp     expert mask
                                 (``expert=E`` reads areaforexpert<E> where a release has it)
        More Dataset without Ground Truth/alll/                             (not used)

  Masks are BMPs with a black background; the leukocyte (nucleus and cytoplasm) is non-zero. Only
  cell vs background is used here (any non-zero channel), not the compartment grey levels. Ground
  truth exists for 250 images (dataset page); images without it are skipped, and so is the
  ``mixt`` folder (images holding several cell types, so no single type can be assigned). A
  third-party loader reports masks 8 px smaller than the image (712x568 for 720x576); masks smaller
  by an even margin of up to 8 px per side are padded back, centred. The layout was taken from the
  dataset page (users.cecs.anu.edu.au/~hrezatofighi/Data/Leukocyte Data.htm) as quoted in the README
  of the GitHub repository "ImageMask-Dataset-LISC" and from public LISC loaders
  (``Ground Truth Segmentation/<class>/areaforexpert1/<n>_expert.bmp``).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from monaiseg.data.datalist import split_cases
from monaiseg.data.video import natural_key
from monaiseg.utils.files import atomic_folders, atomic_outputs

logger = logging.getLogger(__name__)

CELL_TYPES = {1: "neutrophil", 2: "lymphocyte", 3: "monocyte", 4: "eosinophil", 5: "basophil"}
WBC_MASK_LEVELS = (0, 128, 255)  # background, cytoplasm, nucleus
LISC_CLASSES = {"neut": 1, "lymp": 2, "mono": 3, "eosi": 4, "baso": 5}  # folder (lower case) -> cell type
LISC_MIXED = "mixt"
LISC_MAX_MARGIN = 8  # largest per-side padding accepted between a LISC mask and its image


def write_cell_datalist(
    path: str | os.PathLike,
    splits: Mapping[str, list[dict]],
    cell_types: Mapping[int, str] = CELL_TYPES,
    **extra,
) -> Path:
    """Write ``splits`` (name -> items) plus ``"cell_types"`` (value -> name) and ``extra`` keys as JSON."""
    content: dict[str, object] = {name: list(items) for name, items in splits.items()}
    content["cell_types"] = {str(k): v for k, v in cell_types.items()}
    content.update(extra)
    with atomic_outputs(path) as (tmp,):
        tmp.write_text(json.dumps(content, indent=2) + "\n")
    return Path(path)


def instances_from_mask(foreground: np.ndarray, min_area: int = 50) -> np.ndarray:
    """(H, W) bool -> (H, W) uint16 instance map: 8-connected components of at least ``min_area`` px, ids 1..N."""
    count, components, stats, _ = cv2.connectedComponentsWithStats(foreground.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False  # background
    relabel = np.zeros(count, np.uint16)
    relabel[keep] = np.arange(1, keep.sum() + 1)
    return relabel[components]


def save_case(root: Path, case_id: str, image: np.ndarray, instances: np.ndarray, cell_type: int) -> dict:
    """Write ``images/<id>.png`` (RGB) and ``labels/<id>.png`` (uint16) under ``root``; return the datalist item."""
    image_rel, label_rel = f"images/{case_id}.png", f"labels/{case_id}.png"
    item = {"image": image_rel, "label": label_rel, "cell_type": int(cell_type)}
    for rel, array in ((image_rel, cv2.cvtColor(image, cv2.COLOR_RGB2BGR)), (label_rel, instances)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        if not cv2.imwrite(str(root / rel), array):
            raise OSError(f"{root / rel}: could not write the PNG.")
    return item


def _open(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: file not found.") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"{path}: unreadable image ({exc}).") from None


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An 8-bit RGB image file as (H, W, 3) uint8; any other channel count or bit depth raises naming the file."""
    with _open(Path(path)) as img:
        array = np.asarray(img)
        mode = img.mode
    if mode != "RGB":
        channels = 1 if array.ndim == 2 else array.shape[-1]
        raise ValueError(
            f"{path}: expected an 8-bit RGB image, got {channels} channel(s) of {array.dtype} (PIL mode {mode!r})."
        )
    return array


def _check_size(image_path: Path, image: np.ndarray, mask_path: Path, mask: np.ndarray) -> None:
    if image.shape[:2] != mask.shape[:2]:
        raise ValueError(
            f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but image {image_path.name} is "
            f"{image.shape[1]}x{image.shape[0]} (width x height)."
        )


def read_wbc_mask(path: str | os.PathLike, stray_tolerance: float = 0.005) -> np.ndarray:
    """A WBC mask (0 / 128 / 255) as (H, W) uint8 with values in :data:`WBC_MASK_LEVELS`.

    Other values on at most ``stray_tolerance`` of the pixels (annotation residue at cell borders:
    five of the 100 released masks hold a few such pixels) are snapped to the nearest level; more
    raise naming the file and the values.
    """
    with _open(Path(path)) as img:
        mask = np.asarray(img)
    if mask.ndim != 2 or mask.dtype != np.uint8:
        raise ValueError(f"{path}: expected a single-channel 8-bit mask, got shape {mask.shape} of {mask.dtype}.")
    levels = np.asarray(WBC_MASK_LEVELS, np.uint8)
    stray = ~np.isin(mask, levels)
    if stray.any():
        values = sorted(int(v) for v in np.unique(mask[stray]))
        if stray.mean() > stray_tolerance:
            raise ValueError(
                f"{path}: mask values must be 0 (background), 128 (cytoplasm) or 255 (nucleus); "
                f"found {values} on {int(stray.sum())} px ({stray.mean():.2%} of the image)."
            )
        nearest = levels[np.abs(mask[stray, None].astype(int) - levels).argmin(-1)]
        mask = mask.copy()
        mask[stray] = nearest
        logger.info("%s: %d px with values %s snapped to the nearest of %s", path, stray.sum(), values, WBC_MASK_LEVELS)
    return mask


def read_wbc_classes(csv_path: Path) -> dict[int, int]:
    """``class_labels.csv`` (rows ``image number,class``, optional header) as {image number: cell type 1..5}."""
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: class table not found (expected 'image ID,class' rows).")
    classes = {}
    with csv_path.open(newline="") as f:
        for line, row in enumerate(csv.reader(f), start=1):
            if not row or (line == 1 and not row[0].strip().isdigit()):  # blank line or header
                continue
            try:
                image_id, cell_type = int(row[0]), int(row[1])
            except (IndexError, ValueError):
                raise ValueError(f"{csv_path}, line {line}: expected 'image number,class', got {row}.") from None
            if cell_type not in CELL_TYPES:
                raise ValueError(f"{csv_path}, line {line}: class {cell_type} is not one of {sorted(CELL_TYPES)}.")
            classes[image_id] = cell_type
    return classes


def prepare_wbc(
    src_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    min_area: int = 50,
    stray_tolerance: float = 0.005,
) -> Path:
    """Convert the WBC CellaVision layout (``NNN.bmp``, ``NNN.png``, ``class_labels.csv``) to ``out_dir``.

    Cells are the connected components of ``mask > 0`` of at least ``min_area`` px; the image's
    class from the CSV is every cell's ``cell_type``. Returns the datalist path.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: WBC source folder not found.")
    classes = read_wbc_classes(src / "class_labels.csv")
    images = sorted(p for p in src.iterdir() if p.suffix.lower() == ".bmp")
    if not images:
        raise ValueError(f"{src}: no NNN.bmp images found.")
    with atomic_folders(out_dir) as (tmp,):
        items = []
        for image_path in images:
            mask_path = image_path.with_suffix(".png")
            if not mask_path.is_file():
                raise FileNotFoundError(f"{image_path}: mask {mask_path.name} not found.")
            if not image_path.stem.isdigit() or int(image_path.stem) not in classes:
                raise ValueError(f"{src / 'class_labels.csv'}: no row for image {image_path.name}.")
            image, mask = read_rgb(image_path), read_wbc_mask(mask_path, stray_tolerance)
            _check_size(image_path, image, mask_path, mask)
            instances = instances_from_mask(mask > 0, min_area)
            if not instances.any():
                raise ValueError(f"{mask_path}: no cell of at least {min_area} px.")
            items.append(save_case(tmp, image_path.stem, image, instances, classes[int(image_path.stem)]))
        write_cell_datalist(tmp / "datalist.json", split_cases(items, fractions, seed))
    return Path(out_dir) / "datalist.json"


def _entries(folder: Path | None) -> dict[str, Path]:
    """{lower-case name: path} of the entries of ``folder`` (LISC mixes 'Baso' and 'eosi'); {} if absent."""
    if folder is None or not folder.is_dir():
        return {}
    return {p.name.lower(): p for p in sorted(folder.iterdir())}


def _child(folder: Path | None, name: str) -> Path | None:
    return _entries(folder).get(name.lower())


def read_lisc_mask(mask_path: Path, image_path: Path, image: np.ndarray) -> np.ndarray:
    """A LISC expert mask as (H, W) bool foreground, padded to the image size when up to 8 px smaller per side."""
    with _open(mask_path) as img:
        mask = np.asarray(img.convert("RGB")).max(-1) > 0
    dh, dw = image.shape[0] - mask.shape[0], image.shape[1] - mask.shape[1]
    if not (0 <= dh <= 2 * LISC_MAX_MARGIN and 0 <= dw <= 2 * LISC_MAX_MARGIN and dh % 2 == 0 and dw % 2 == 0):
        raise ValueError(
            f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but image {image_path.name} is "
            f"{image.shape[1]}x{image.shape[0]} (width x height); only masks smaller by an even "
            f"margin of up to {LISC_MAX_MARGIN} px per side are padded to the image."
        )
    return np.pad(mask, ((dh // 2, dh // 2), (dw // 2, dw // 2)))


def find_lisc_cases(src_dir: str | os.PathLike, expert: int = 1) -> tuple[list[tuple[Path, Path, int]], dict]:
    """Pairs (image, mask, cell type) of a LISC release and the skipped images.

    ``src_dir`` is ``LISC Database`` or its parent. Returns ``(cases, skipped)`` with
    ``skipped = {"mixed cell types": [...], "no ground truth": [...]}`` (paths relative to the root).
    """
    src = Path(src_dir)
    root = src if _child(src, "Main Dataset") else _child(src, "LISC Database")
    main = _child(root, "Main Dataset")
    if root is None or main is None:
        raise FileNotFoundError(
            f"{src}: not a LISC release (expected 'LISC Database/Main Dataset/<class>/<n>.bmp' "
            "and 'Ground Truth Segmentation/<class>/areaforexpert1/<n>_expert.bmp')."
        )
    truth = _child(root, "Ground Truth Segmentation")
    cases: list[tuple[Path, Path, int]] = []
    skipped: dict[str, list[str]] = {"mixed cell types": [], "no ground truth": []}
    for folder in sorted(p for p in main.iterdir() if p.is_dir()):
        name = folder.name.lower()
        if name not in LISC_CLASSES and name != LISC_MIXED:
            raise ValueError(f"{folder}: unknown LISC class folder (expected Baso, eosi, lymp, mixt, mono, neut).")
        masks = _entries(_child(_child(truth, folder.name), f"areaforexpert{expert}"))
        images = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".bmp"), key=lambda p: natural_key(p.name))
        for image in images:
            mask = masks.get(f"{image.stem}_expert.bmp".lower())
            rel = image.relative_to(root).as_posix()
            if name == LISC_MIXED:
                skipped["mixed cell types"].append(rel)
            elif mask is None:
                skipped["no ground truth"].append(rel)
            else:
                cases.append((image, mask, LISC_CLASSES[name]))
    if not cases:
        raise ValueError(
            f"{root}: no image with an areaforexpert{expert} ground truth found "
            f"(expected 'Ground Truth Segmentation/<class>/areaforexpert{expert}/<n>_expert.bmp')."
        )
    return cases, skipped


def prepare_lisc(
    src_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    expert: int = 1,
    seed: int = 0,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    min_area: int = 50,
) -> Path:
    """Convert a LISC release to ``out_dir`` using the masks of ``areaforexpert<expert>``.

    Cells are the connected components of the mask of at least ``min_area`` px, typed by the
    class folder. Images without ground truth and the ``mixt`` folder are skipped; their paths
    are listed under ``"skipped"`` in the datalist and counted in the log. Returns the datalist path.
    """
    cases, skipped = find_lisc_cases(src_dir, expert)
    with atomic_folders(out_dir) as (tmp,):
        items = []
        for image_path, mask_path, cell_type in cases:
            image = read_rgb(image_path)
            instances = instances_from_mask(read_lisc_mask(mask_path, image_path, image), min_area)
            if not instances.any():
                raise ValueError(f"{mask_path}: no cell of at least {min_area} px.")
            case_id = f"{image_path.parent.name.lower()}_{image_path.stem}"
            items.append(save_case(tmp, case_id, image, instances, cell_type))
        write_cell_datalist(tmp / "datalist.json", split_cases(items, fractions, seed), skipped=skipped)
    for reason, paths in skipped.items():
        if paths:
            logger.warning("LISC: skipped %d image(s): %s", len(paths), reason)
    return Path(out_dir) / "datalist.json"


def main(dataset: str, argv: Sequence[str] | None = None) -> None:
    """CLI of ``scripts/prepare_<dataset>.py``, ``dataset`` "wbc" or "lisc": ``--src DIR --out DIR``, prints
    the images per split (LISC: and the skipped ones) and the datalist path; bad input exits with status 2."""
    descriptions = {
        "wbc": 'Convert the WBC CellaVision dataset ("Dataset 2" of Zheng et al., Micron 2018) to the cell dataset '
        "format.",
        "lisc": "Convert the LISC release (Rezatofighi & Soltanian-Zadeh, CMIG 2011) to the cell dataset format.",
    }
    sources = {
        "wbc": "folder with NNN.bmp, NNN.png and class_labels.csv",
        "lisc": "the 'LISC Database' folder or its parent",
    }
    parser = argparse.ArgumentParser(description=descriptions[dataset])
    parser.add_argument("--src", required=True, help=sources[dataset])
    parser.add_argument("--out", required=True, help="dataset folder to create (must not exist or be empty)")
    if dataset == "lisc":
        parser.add_argument("--expert", type=int, default=1, help="use the masks of areaforexpert<EXPERT>")
    parser.add_argument("--seed", type=int, default=0, help="seed of the 70/15/15 split")
    if dataset == "wbc":
        parser.add_argument("--min_area", type=int, default=50, help="smallest cell kept, in pixels")
    args = parser.parse_args(argv)
    try:
        if dataset == "wbc":
            datalist = prepare_wbc(args.src, args.out, seed=args.seed, min_area=args.min_area)
        else:
            datalist = prepare_lisc(args.src, args.out, expert=args.expert, seed=args.seed)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        parser.error(str(e))
    content = json.loads(datalist.read_text())
    for split in ("training", "validation", "testing"):
        print(f"{split}: {len(content[split])} images")
    if dataset == "lisc":
        for reason, paths in content["skipped"].items():
            print(f"skipped ({reason}): {len(paths)} images")
    print(datalist)
