"""Image-classification datalists (SAM-MedCls) from class folders, a CSV or the WBC labels.

Layouts read (the source is never modified):

- class folders: ``root/<class>/<image>`` (images: `IMAGE_SUFFIXES`, any depth below the class
  folder); classes are the sorted folder names or the order given;
- a CSV with a header, columns ``image`` (path relative to `root`, or absolute) and ``label``
  (a class name, or an integer index when the classes are given or the labels are all integers);
- WBC CellaVision "Dataset 2": ``NNN.bmp`` + ``class_labels.csv`` (1 neutrophil .. 5 basophil,
  `read_wbc_classes`), classes 0..4 in that order.

Output: a MONAI datalist ``{"training": [{"image": rel, "label": index}], "validation": [...],
"testing": [...], "labels": {"0": name, ...}}`` split per class with a fixed seed (stratified:
every class is in every split when it has enough images), paths relative to `root`.
Every image is opened once: an unreadable file is named in the error. A CSV naming images that do not
exist raises one error naming the CSV and every missing image (`missing_images_error`), before anything is
written.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from monaiseg.data.datalist import split_cases, write_datalist

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def check_image(path: str | os.PathLike) -> None:
    """Raise ValueError naming `path` when it is not a readable image file."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: unreadable image ({exc}).") from None


def missing_images_error(csv_path: str | os.PathLike, missing: Sequence[str]) -> FileNotFoundError:
    """One error naming `csv_path` and the images it names that do not exist (the first 10 listed)."""
    more = f" and {len(missing) - 10} more" if len(missing) > 10 else ""
    return FileNotFoundError(
        f"{csv_path}: {len(missing)} image(s) named in it do not exist: {', '.join(missing[:10])}{more}."
    )


def folder_items(root: str | os.PathLike, classes: Sequence[str] | None = None) -> tuple[list[dict], list[str]]:
    """Items ``{"image": rel, "label": index}`` of ``root/<class>/...`` and the class names.

    `classes`: the class folders in label order (default: every sub-folder, sorted). A class
    folder that is absent or holds no image raises naming the folder."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found.")
    if classes is None:
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if len(classes) < 2:
            raise ValueError(f"{root}: expected one sub-folder per class (at least 2), found {classes}.")
    items = []
    for index, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: class folder not found.")
        images = sorted(p for p in folder.rglob("*") if _is_image(p))
        if not images:
            raise ValueError(f"{folder}: class folder {name!r} holds no image ({', '.join(IMAGE_SUFFIXES)}).")
        for path in images:
            check_image(path)
            items.append({"image": path.relative_to(root).as_posix(), "label": index})
    return items, list(classes)


def csv_items(
    csv_path: str | os.PathLike, root: str | os.PathLike | None = None, classes: Sequence[str] | None = None
) -> tuple[list[dict], list[str]]:
    """Items ``{"image": path, "label": index}`` of a CSV (columns image, label) and the class names.

    Paths are taken relative to `root` (default: the CSV's folder). `classes` fixes the label
    order; without it the classes are the sorted names in the CSV (or 0..max when every label is
    an integer). An unknown class, a bad index or an unreadable image raises naming the CSV and
    its line; missing images raise once, every one named (`missing_images_error`)."""
    csv_path = Path(csv_path)
    root = Path(root) if root is not None else csv_path.parent
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: CSV not found.")
    with csv_path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"image", "label"} <= set(reader.fieldnames):
            raise ValueError(
                f"{csv_path}: expected a header with columns 'image' and 'label', got {reader.fieldnames}."
            )
        rows = [(line, row["image"], (row["label"] or "").strip()) for line, row in enumerate(reader, start=2)]
    if not rows:
        raise ValueError(f"{csv_path}: no rows.")
    numeric = all(label.isdigit() for _, _, label in rows)
    if classes is None:
        classes = (
            [str(i) for i in range(max(int(label) for _, _, label in rows) + 1)]
            if numeric
            else sorted({label for _, _, label in rows})
        )
    classes = list(classes)
    paths = {line: Path(image) if Path(image).is_absolute() else root / image for line, image, _ in rows}
    missing = [f"{image!r} (line {line})" for line, image, _ in rows if not paths[line].is_file()]
    if missing:
        raise missing_images_error(csv_path, missing)
    items = []
    for line, image, label in rows:
        if label in classes:
            index = classes.index(label)
        elif label.isdigit() and int(label) < len(classes):
            index = int(label)
        else:
            raise ValueError(f"{csv_path}, line {line}: unknown class {label!r}; classes are {classes}.")
        try:
            check_image(paths[line])
        except ValueError as exc:
            raise ValueError(f"{csv_path}, line {line}: {exc}") from None
        items.append({"image": Path(image).as_posix(), "label": index})
    return items, classes


def wbc_items(src_dir: str | os.PathLike) -> tuple[list[dict], list[str]]:
    """Items ``{"image": "NNN.bmp", "label": cell type - 1}`` of a WBC CellaVision folder and the
    five class names (neutrophil, lymphocyte, monocyte, eosinophil, basophil)."""
    from monaiseg.data.cells import CELL_TYPES, read_wbc_classes

    src = Path(src_dir)
    classes = read_wbc_classes(src / "class_labels.csv")
    missing = [f"{i:03d}.bmp (image ID {i})" for i in sorted(classes) if not (src / f"{i:03d}.bmp").is_file()]
    if missing:
        raise missing_images_error(src / "class_labels.csv", missing)
    items = []
    for image_id, cell_type in sorted(classes.items()):
        path = src / f"{image_id:03d}.bmp"
        check_image(path)
        items.append({"image": path.name, "label": cell_type - 1})
    return items, [CELL_TYPES[k] for k in sorted(CELL_TYPES)]


def stratified_split(
    items: Sequence[dict], fractions: Sequence[float] | Mapping[str, float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, list[dict]]:
    """`split_cases` applied to each class (by ``label``) with the same seed, the splits merged."""
    splits: dict[str, list[dict]] = {}
    for label in sorted({item["label"] for item in items}):
        for name, chosen in split_cases([i for i in items if i["label"] == label], fractions, seed).items():
            splits.setdefault(name, []).extend(chosen)
    return splits


def write_classification_datalist(
    out_path: str | os.PathLike,
    items: Sequence[dict],
    classes: Sequence[str],
    fractions: Sequence[float] | Mapping[str, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> Path:
    """Split `items` (`stratified_split`) and write the datalist with ``"labels"`` atomically."""
    return write_datalist(out_path, stratified_split(items, fractions, seed), labels=dict(enumerate(classes)))


def load_classification_datalist(
    datalist: str | os.PathLike, base_dir: str | os.PathLike, key: str, class_names: Sequence[str]
) -> list[dict]:
    """The items of split `key` with paths resolved against `base_dir`, after checking that the
    datalist's ``"labels"`` (when present) are `class_names` and every label is an index of them."""
    from monai.data import load_decathlon_datalist

    content = json.loads(Path(datalist).read_text())
    names = content.get("labels")
    if names is not None and [names[k] for k in sorted(names, key=int)] != list(class_names):
        raise ValueError(
            f"{datalist}: its classes {[names[k] for k in sorted(names, key=int)]} differ from the "
            f"bundle's class_names {list(class_names)}; set class_names to the datalist's."
        )
    items = load_decathlon_datalist(datalist, data_list_key=key, base_dir=base_dir)
    for item in items:
        if not isinstance(item.get("label"), int) or not 0 <= item["label"] < len(class_names):
            raise ValueError(
                f"{datalist}: item {item.get('image')} has label {item.get('label')!r}, expected a class "
                f"index 0..{len(class_names) - 1}."
            )
    return items


def image_items(path: str | os.PathLike) -> list[dict]:
    """``[{"image": file}]`` for one image file, or for every image of a folder (sorted, recursive)."""
    path = Path(path)
    if path.is_file():
        return [{"image": str(path)}]
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: no such image file or folder.")
    images = sorted(p for p in path.rglob("*") if _is_image(p))
    if not images:
        raise ValueError(f"{path}: folder holds no image ({', '.join(IMAGE_SUFFIXES)}).")
    return [{"image": str(p)} for p in images]


def main(argv: Sequence[str] | None = None) -> None:
    """CLI: ``python -m monaiseg.data.classification --root DIR [--csv FILE | --wbc] --out datalist.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="dataset folder (class folders, or the images of the CSV)")
    parser.add_argument("--csv", default=None, help="CSV with columns image,label (default: class folders)")
    parser.add_argument("--wbc", action="store_true", help="root is a WBC CellaVision folder (class_labels.csv)")
    parser.add_argument("--classes", nargs="+", default=None, help="class names in label order")
    parser.add_argument("--out", required=True, help="datalist JSON to write (paths relative to --root)")
    parser.add_argument("--fractions", type=float, nargs=3, default=(0.7, 0.15, 0.15))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.wbc:
        items, classes = wbc_items(args.root)
    elif args.csv:
        items, classes = csv_items(args.csv, args.root, args.classes)
    else:
        items, classes = folder_items(args.root, args.classes)
    print(write_classification_datalist(args.out, items, classes, args.fractions, args.seed))


if __name__ == "__main__":
    main()
