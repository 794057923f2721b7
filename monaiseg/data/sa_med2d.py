"""Convert SAM-Med2D's data layout (SA-Med2D-16M / SA-Med2D-20M, and the repository's data_demo)
to class maps + a MONAI datalist for the sam_med2d bundle.

Source layout (one binary mask PNG per object, 0/255 or 0/1, the image's size):
  <root>/images/<name>.png
  <root>/masks/<mask>.png
  <root>/SAMed2D_v1.json (the 16M release) or image2label_train.json (data_demo, train.py):
      {"<image path>": ["<mask path>", ...]}
  <root>/label2image_test.json (optional, test.py): {"<mask path>": "<image path>"}
Paths in the JSON are relative to <root> ("images/x.png", 16M release) or to its parent
("data_demo/images/x.png", data_demo); both are accepted.

Mask names give the class: `<image stem>_<class name>_<NNN>.png` (data_demo, e.g.
amos_0006_90_liver_000.png) or `<image stem>--<class id>_<NNN>.png` (16M release, e.g.
ct_00--AbdomenCT1K--Case_00011--x_0041--0000_001.png, dataset = second `--` field of the image
name). For the release, class names come from SAMed2D_v1_class_mapping_id.json when present
(assumed {dataset: {class id: name}}, or {dataset: {name: class id}}; neither the id width nor
this layout is documented upstream), else "<dataset>:<class id>". NNN numbers instances.

Output (`prepare_sa_med2d`): labels/<image stem>.png, one class map per image (uint8, or uint16
beyond 255 classes; classes numbered 1..N in name order, where masks overlap the later mask in
the JSON wins), datalist.json with "training" / "validation" (from the training map) and
"testing" (label2image_test.json, else a fraction of the training map) and "labels" {id: name}.
Images are referenced in place (absolute paths), not copied.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from monaiseg.data.datalist import split_cases, write_datalist
from monaiseg.utils.files import atomic_folders

logger = logging.getLogger(__name__)

TRAIN_MAPS = ("SAMed2D_v1.json", "image2label_train.json")
TEST_MAP = "label2image_test.json"
CLASS_MAPPING = "SAMed2D_v1_class_mapping_id.json"


def resolve(root: Path, path: str) -> Path:
    """A path of the JSON files: relative to `root`, or to its parent (data_demo/... style)."""
    for candidate in (root / path, root.parent / path):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{path} (listed in the JSON of {root}) not found under {root} or {root.parent}")


def read_image_masks(root: str | os.PathLike) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(training, testing) maps image path -> mask paths, as written in the JSON files of `root`."""
    root = Path(root)
    found = [root / name for name in TRAIN_MAPS if (root / name).is_file()]
    if not found:
        raise FileNotFoundError(f"{root}: no {' or '.join(TRAIN_MAPS)} (SAM-Med2D's image -> masks map)")
    try:
        training = json.loads(found[0].read_text())
        testing: dict[str, list[str]] = {}
        if (root / TEST_MAP).is_file():
            for mask, image in json.loads((root / TEST_MAP).read_text()).items():
                testing.setdefault(image, []).append(mask)
        if not isinstance(training, dict) or not all(isinstance(v, list) for v in training.values()):
            raise ValueError("expected {image: [mask, ...]}")
    except (ValueError, AttributeError) as exc:
        raise ValueError(f"{found[0]}: not SAM-Med2D's JSON layout ({exc})") from None
    return training, testing


def mask_class(image: str, mask: str, class_names: Mapping | None = None) -> str:
    """Class name of a mask file of `image` from its name (see the module docstring)."""
    stem, name = Path(image).stem, Path(mask).stem
    if not name.startswith(stem) or len(name) < len(stem) + 6 or not name[-3:].isdigit() or name[-4] != "_":
        raise ValueError(f"mask {mask}: name is not <image stem>_<class>_<NNN> or <image stem>--<class id>_<NNN>")
    rest = name[len(stem) : -4]
    if rest.startswith("--"):
        class_id, dataset = rest[2:], (stem.split("--") + ["", ""])[1]
        table = {str(k): str(v) for k, v in (class_names or {}).get(dataset, {}).items()}
        inverse = {v: k for k, v in table.items()}
        for key in (class_id, str(int(class_id)) if class_id.isdigit() else class_id):
            if key in table or key in inverse:
                return table.get(key) or inverse[key]
        return f"{dataset}:{class_id}"
    return rest.strip("_")


def read_binary_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A 0/255 or 0/1 mask PNG (H, W) -> bool; ValueError naming the file otherwise."""
    try:
        mask = np.asarray(Image.open(path))
    except OSError as exc:
        raise ValueError(f"{path}: not a readable mask image ({exc})") from None
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.shape != shape:
        raise ValueError(f"{path}: mask shape {mask.shape} differs from its image's {shape}")
    values = set(np.unique(mask).tolist())
    if not values <= {0, 1} and not values <= {0, 255}:
        raise ValueError(f"{path}: not a binary mask (values {sorted(values)[:6]}; expected 0/255 or 0/1)")
    return mask > 0


def prepare_sa_med2d(
    root: str | os.PathLike,
    out_dir: str | os.PathLike,
    splits: Sequence[float] | Mapping[str, float] = (0.9, 0.1),
    seed: int = 0,
) -> Path:
    """Write class maps and datalist.json (see the module docstring) to `out_dir` (must not exist
    or be empty), atomically. `splits`: fractions of the training map for training / validation
    (and testing, as a third fraction, when there is no label2image_test.json). Returns the datalist."""
    root = Path(root).resolve()
    training, testing = read_image_masks(root)
    class_names = json.loads((root / CLASS_MAPPING).read_text()) if (root / CLASS_MAPPING).is_file() else None
    groups = {**training, **testing}
    names = sorted({mask_class(image, m, class_names) for image, masks in groups.items() for m in masks})
    if not names:
        raise ValueError(f"{root}: the JSON lists no masks")
    ids = {name: i + 1 for i, name in enumerate(names)}
    dtype = np.uint8 if len(names) <= 255 else np.uint16
    with atomic_folders(out_dir) as (tmp,):
        (tmp / "labels").mkdir()
        items = {}
        for image, masks in groups.items():
            image_path = resolve(root, image)
            with Image.open(image_path) as img:
                width, height = img.size
            label: np.ndarray = np.zeros((height, width), dtype)
            overlap = 0
            for mask in masks:
                binary = read_binary_mask(resolve(root, mask), (height, width))
                overlap += int((binary & (label > 0)).sum())
                label[binary] = ids[mask_class(image, mask, class_names)]
            if overlap:
                logger.warning("%s: %d pixels covered by several masks (the later mask wins)", image_path, overlap)
            target = Path("labels") / f"{image_path.stem}.png"
            if (tmp / target).exists():
                raise ValueError(f"{image_path}: two images share the name {image_path.stem}")
            Image.fromarray(label).save(tmp / target)
            items[image] = {"image": str(image_path), "label": target.as_posix()}
        train_items = [items[i] for i in training if i not in testing]
        if not train_items:
            raise ValueError(f"{root}: no training image (every image is in {TEST_MAP})")
        content = split_cases(train_items, splits, seed)
        if testing:
            content["testing"] = [items[i] for i in testing]
        write_datalist(tmp / "datalist.json", content, labels={i: n for n, i in ids.items()})
    logger.info("SAM-Med2D data: %d images, %d classes -> %s", len(items), len(names), out_dir)
    return Path(out_dir) / "datalist.json"


def main(argv: Sequence[str] | None = None) -> None:
    """CLI of ``scripts/prepare_sa_med2d.py``: ``--src DIR --out DIR [--val 0.1] [--test 0.0] [--seed 0]``,
    prints the images per split, the number of classes and the datalist path; bad input exits with status 2."""
    parser = argparse.ArgumentParser(
        description="Convert SAM-Med2D's data layout (SA-Med2D-16M release or data_demo) to class maps + datalist.json."
    )
    parser.add_argument("--src", required=True, help="SAM-Med2D data folder (e.g. SAMed2Dv1 or data_demo)")
    parser.add_argument("--out", required=True, help="dataset folder to create (must not exist or be empty)")
    parser.add_argument("--val", type=float, default=0.1, help="fraction of the training map for validation")
    parser.add_argument(
        "--test",
        type=float,
        default=0.0,
        help="fraction of the training map for testing (when there is no label2image_test.json)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the split")
    args = parser.parse_args(argv)
    splits = {"training": 1.0 - args.val - args.test, "validation": args.val}
    if args.test:
        splits["testing"] = args.test
    try:
        datalist = prepare_sa_med2d(args.src, args.out, splits=splits, seed=args.seed)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        parser.error(str(e))
    content = json.loads(datalist.read_text())
    for split in ("training", "validation", "testing"):
        print(f"{split}: {len(content.get(split, []))} images")
    print(f"classes: {len(content['labels'])}")
    print(datalist)
