"""Datalists for the official FLARE22, MSD and LiTS release layouts.

Volumes stay where they are: the datalist holds paths relative to ``data_root`` (the
``dataset_dir`` of a bundle). Every check runs before anything is written, so on error
(missing root, an image without its label or the reverse, no cases) no datalist appears.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from monaiseg.data.datalist import split_cases, write_datalist

FLARE22_LABELS = {
    1: "liver",
    2: "right kidney",
    3: "spleen",
    4: "pancreas",
    5: "aorta",
    6: "inferior vena cava",
    7: "right adrenal gland",
    8: "left adrenal gland",
    9: "gallbladder",
    10: "esophagus",
    11: "stomach",
    12: "duodenum",
    13: "left kidney",
}
LITS_LABELS = {1: "liver", 2: "tumour"}


def _root(data_root: str | os.PathLike) -> Path:
    root = Path(data_root)
    if not root.is_dir():
        raise FileNotFoundError(f"data root not found or not a folder: {root}")
    return root


def _keyed(paths, pattern: str) -> dict[str, Path]:
    """Map case key (first group of ``pattern`` on the file name) -> path; skips ``._`` files."""
    matches = ((re.fullmatch(pattern, p.name), p) for p in paths if not p.name.startswith("._"))
    return {m.group(1): p for m, p in matches if m}


def _pair(root: Path, images: dict[str, Path], labels: dict[str, Path], expected: str) -> list[dict]:
    """Match images and labels by case key into datalist items with paths relative to ``root``."""
    for kind, unmatched in (
        ("image without label", images.keys() - labels.keys()),
        ("label without image", labels.keys() - images.keys()),
    ):
        if unmatched:
            names = [str((images | labels)[k]) for k in sorted(unmatched)]
            more = f" (and {len(names) - 3} more)" if len(names) > 3 else ""
            raise ValueError(f"{root}: {kind}: {', '.join(names[:3])}{more}")
    if not images:
        raise ValueError(f"{root}: no cases found (expected {expected})")
    return [
        {"image": images[k].relative_to(root).as_posix(), "label": labels[k].relative_to(root).as_posix()}
        for k in sorted(images, key=lambda k: (len(k), k))  # numeric keys in numeric order
    ]


def find_flare22_cases(data_root: str | os.PathLike) -> list[dict]:
    """Cases of ``FLARE22_LabeledCase50/images/FLARE22_Tr_0001_0000.nii.gz`` with
    ``labels/FLARE22_Tr_0001.nii.gz``; ``data_root`` is ``FLARE22_LabeledCase50`` or its parent.
    """
    root = _root(data_root)
    folder = root if (root / "images").is_dir() else root / "FLARE22_LabeledCase50"
    images = _keyed(folder.glob("images/*.nii.gz"), r"(.+)_0000\.nii\.gz")
    labels = _keyed(folder.glob("labels/*.nii.gz"), r"(.+)\.nii\.gz")
    expected = "FLARE22_LabeledCase50/images/FLARE22_Tr_0001_0000.nii.gz, labels/FLARE22_Tr_0001.nii.gz"
    return _pair(root, images, labels, expected)


def find_lits_cases(data_root: str | os.PathLike) -> list[dict]:
    """Cases of ``Training Batch {1,2}/volume-N.nii`` with ``segmentation-N.nii`` (any depth)."""
    root = _root(data_root)
    images = _keyed(root.rglob("volume-*.nii*"), r"volume-(\d+)\.nii(?:\.gz)?")
    labels = _keyed(root.rglob("segmentation-*.nii*"), r"segmentation-(\d+)\.nii(?:\.gz)?")
    return _pair(root, images, labels, "'Training Batch 1/volume-0.nii' with 'segmentation-0.nii'")


def find_msd_cases(
    data_root: str | os.PathLike, task: str = "Task06_Lung"
) -> tuple[list[dict], list[dict], dict[int, str]]:
    """Labelled cases, test images and label names from an MSD task's ``dataset.json``.

    ``data_root`` is the task folder (holding ``dataset.json``) or its parent. Files that
    ``dataset.json`` does not list (such as macOS ``._lung_001.nii.gz``) are ignored. Returns
    ``(labelled [{"image", "label"}], test [{"image"}], {label value: name} without background)``.
    """
    root = _root(data_root)
    task_dir = root if (root / "dataset.json").is_file() else root / task
    meta = task_dir / "dataset.json"
    if not meta.is_file():
        raise FileNotFoundError(f"{meta} not found (expected the MSD layout {task}/dataset.json)")
    try:
        info = json.loads(meta.read_text())
    except ValueError as e:
        raise ValueError(f"{meta}: not valid JSON ({e})") from e

    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    problems = {
        (True, False): "image without label",
        (False, True): "label without image",
        (False, False): "image and label not found",
    }
    labelled = []
    for entry in info.get("training", []):
        image, label = task_dir / entry["image"], task_dir / entry["label"]
        problem = problems.get((image.is_file(), label.is_file()))
        if problem:
            raise ValueError(f"{meta}: {problem}: {image}, {label}")
        labelled.append({"image": rel(image), "label": rel(label)})
    if not labelled:
        raise ValueError(f"{meta}: no labelled cases listed under 'training'")
    test = []
    for entry in info.get("test", []):
        if not (task_dir / entry).is_file():
            raise ValueError(f"{meta}: test image not found: {task_dir / entry}")
        test.append({"image": rel(task_dir / entry)})
    labels = {int(k): v for k, v in info.get("labels", {}).items() if int(k) != 0}
    return labelled, test, labels


def _train_val(cases: list[dict], val_fraction: float, seed: int) -> dict[str, list[dict]]:
    return split_cases(cases, {"training": 1 - val_fraction, "validation": val_fraction}, seed)


def prepare_flare22(
    data_root: str | os.PathLike, output: str | os.PathLike, seed: int = 0, val_fraction: float = 0.2
) -> Path:
    """Write a training/validation datalist of the 50 labelled FLARE22 cases; returns its path."""
    cases = find_flare22_cases(data_root)
    return write_datalist(output, _train_val(cases, val_fraction, seed), labels=FLARE22_LABELS)


def prepare_lits(
    data_root: str | os.PathLike, output: str | os.PathLike, seed: int = 0, val_fraction: float = 0.2
) -> Path:
    """Write a training/validation datalist of the 131 LiTS training volumes; returns its path."""
    cases = find_lits_cases(data_root)
    return write_datalist(output, _train_val(cases, val_fraction, seed), labels=LITS_LABELS)


def prepare_msd(
    data_root: str | os.PathLike,
    output: str | os.PathLike,
    seed: int = 0,
    val_fraction: float = 0.2,
    task: str = "Task06_Lung",
) -> Path:
    """Write training/validation (labelled) and testing (image-only) lists of an MSD task."""
    labelled, test, labels = find_msd_cases(data_root, task)
    splits = _train_val(labelled, val_fraction, seed) | {"testing": test}
    return write_datalist(output, splits, labels=labels)


PREPARERS = {  # CLI name -> (dataset name, function)
    "flare22": ("FLARE22", prepare_flare22),
    "msd": ("Medical Segmentation Decathlon", prepare_msd),
    "lits": ("LiTS", prepare_lits),
}


def main(dataset: str, argv: Sequence[str] | None = None) -> None:
    """CLI of ``scripts/prepare_<dataset>.py``: ``--data_root DIR --output datalist.json``."""
    name, prepare = PREPARERS[dataset]
    parser = argparse.ArgumentParser(
        description=f"Write a MONAI datalist for the {name} release layout "
        "(paths relative to --data_root; the volumes are not copied)."
    )
    parser.add_argument("--data_root", required=True, help="dataset folder as released (dataset_dir)")
    parser.add_argument("--output", required=True, help="datalist JSON to write")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/validation split")
    parser.add_argument("--val_fraction", type=float, default=0.2, help="validation share of labelled cases")
    if dataset == "msd":
        parser.add_argument("--task", default="Task06_Lung", help="MSD task folder under --data_root")
    args = parser.parse_args(argv)
    try:
        path = prepare(**vars(args))
    except (FileNotFoundError, ValueError) as e:
        parser.error(str(e))
    print(path)
