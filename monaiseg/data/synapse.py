"""Synapse multi-organ CT (MICCAI 2015 BTCV "Abdomen") to the slice/volume dataset layout.

Source: the official ``RawData/Training/img/img0001.nii.gz`` with ``label/label0001.nii.gz``
(13 organ labels). As upstream SAMed / TransUNet preprocessing: HU clipped to [-125, 275] and
scaled to [0, 1]; the 13 raw labels mapped to 8 organs (others -> background); the standard
split of 18 training and 12 test cases. Output (``dst``, written atomically)::

    datalist.json  {"labels": {"0": "background", "1": "spleen", ...},
                    "training": [{"image": "slices/case0005_z042_image.npy",
                                  "label": "slices/case0005_z042_label.npy", "case": "case0005", "slice": 42}],
                    "test": [{"image": "volumes/case0001_image.nii.gz",
                              "label": "volumes/case0001_label.nii.gz", "case": "case0001"}]}
    slices/*.npy      training slices: image float32 (X, Y) in [0, 1], label uint8 (X, Y)
    volumes/*.nii.gz  test volumes: image float32, label uint8, the source affine

Slice ``z`` of a case is exactly ``volume[:, :, z]`` of its NIfTI data array (as MONAI
``LoadImage`` returns it), so slice-wise training and slice-by-slice evaluation of the volumes
see the same 2D arrays. (Upstream transposes to (z, y, x) first; the orientation only has to
agree between training and testing.) The same layout writer serves ACDC and the synthetic data.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.spatialimages import SpatialImage

from monaiseg.data.datalist import write_datalist
from monaiseg.utils.files import atomic_folders

logger = logging.getLogger(__name__)

SYNAPSE_LABELS = {
    0: "background",
    1: "spleen",
    2: "right kidney",
    3: "left kidney",
    4: "gallbladder",
    5: "liver",
    6: "stomach",
    7: "aorta",
    8: "pancreas",
}
# raw label -> class id (upstream SAMed); 5 esophagus, 9 inferior vena cava, 10 portal and splenic
# vein, 12 right and 13 left adrenal gland become background
SYNAPSE_RAW_TO_CLASS = {0: 0, 1: 1, 2: 2, 3: 3, 4: 4, 5: 0, 6: 5, 7: 6, 8: 7, 9: 0, 10: 0, 11: 8, 12: 0, 13: 0}
SYNAPSE_TEST_CASES = (1, 2, 3, 4, 8, 22, 25, 29, 32, 35, 36, 38)
SYNAPSE_TRAIN_CASES = (5, 6, 7, 9, 10, 21, 23, 24, 26, 27, 28, 30, 31, 33, 34, 37, 39, 40)
HU_WINDOW = (-125.0, 275.0)

Loader = Callable[[str], tuple[np.ndarray, np.ndarray, np.ndarray]]


def normalize_ct(image: np.ndarray, window: Sequence[float] = HU_WINDOW) -> np.ndarray:
    """HU (any shape) -> float32 in [0, 1]: clip to ``window`` then scale linearly."""
    low, high = window
    return ((np.clip(image, low, high) - low) / (high - low)).astype(np.float32)


def _load_nifti(path: Path, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    """(data (X, Y, Z), affine) of a 3D NIfTI; ``dtype`` float type, else the stored values."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        nii = nib.load(path)
        if not isinstance(nii, SpatialImage):
            raise TypeError(f"a {type(nii).__name__}, not a volume")
        data = nii.get_fdata(dtype=dtype) if dtype else np.asanyarray(nii.dataobj)
    except Exception as e:  # nibabel / gzip raise several types on corrupt files
        raise ValueError(f"{path}: cannot read as NIfTI ({e})") from e
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"{path}: expected a 3D volume, got shape {data.shape}")
    return data, nii.affine


def read_pair(
    image_path: str | os.PathLike, label_path: str | os.PathLike, raw_to_class: Mapping[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read an image volume (float32, X, Y, Z) and its label volume mapped to class ids (uint8).

    Refuses, naming the file: a missing or unreadable file, a label value that is not a key of
    ``raw_to_class`` (or not an integer), and image/label geometry that differs (shape or affine).
    Returns ``(image, label, affine)``.
    """
    image_path, label_path = Path(image_path), Path(label_path)
    image, affine = _load_nifti(image_path, np.float32)
    label, label_affine = _load_nifti(label_path)
    if image.shape != label.shape:
        raise ValueError(f"{label_path}: shape {label.shape} differs from its image's {image.shape} ({image_path})")
    if not np.allclose(affine, label_affine, atol=1e-3):
        raise ValueError(
            f"{label_path}: affine differs from its image's ({image_path}):\n"
            f"{np.round(label_affine, 4)}\nvs\n{np.round(affine, 4)}"
        )
    unknown = [v for v in np.unique(label).tolist() if not float(v).is_integer() or int(v) not in raw_to_class]
    if unknown:
        raise ValueError(f"{label_path}: label values {unknown[:8]} outside the known label set {sorted(raw_to_class)}")
    if not np.isfinite(image).all():
        raise ValueError(f"{image_path}: image holds NaN or infinite values")
    table = np.zeros(max(raw_to_class) + 1, np.uint8)
    for raw, cls in raw_to_class.items():
        table[raw] = cls
    return image, table[label.astype(np.int64)], affine


def _save_volume(array: np.ndarray, affine: np.ndarray, path: Path) -> None:
    volume = nib.Nifti1Image(array, affine)
    volume.set_qform(affine, code=1)
    volume.set_sform(affine, code=1)
    volume.header.set_xyzt_units("mm")
    nib.save(volume, path)


def write_slice_dataset(
    dst: str | os.PathLike,
    splits: Mapping[str, Sequence[str]],
    load: Loader,
    labels: Mapping[int, str],
    extra: Mapping[str, Mapping] | None = None,
) -> Path:
    """Write the layout of the module docstring to ``dst`` (must not exist or be empty), atomically.

    ``splits``: split name -> case names; ``"training"`` cases become 2D slices, every other split
    3D volumes. ``load(case) -> (image float32 (X, Y, Z) normalised, label uint8 (X, Y, Z), affine)``.
    ``extra``: case -> additional keys of its datalist items. Returns the datalist path.
    """
    extra = extra or {}
    with atomic_folders(dst) as (tmp,):
        (tmp / "slices").mkdir()
        (tmp / "volumes").mkdir()
        content: dict[str, list[dict]] = {}
        for split, cases in splits.items():
            items = content.setdefault(split, [])
            for case in cases:
                image, label, affine = load(case)
                if split == "training":
                    for z in range(image.shape[2]):
                        stem = f"slices/{case}_z{z:03d}"
                        np.save(tmp / f"{stem}_image.npy", np.ascontiguousarray(image[:, :, z], np.float32))
                        np.save(tmp / f"{stem}_label.npy", np.ascontiguousarray(label[:, :, z], np.uint8))
                        items.append(
                            {
                                "image": f"{stem}_image.npy",
                                "label": f"{stem}_label.npy",
                                "case": case,
                                "slice": z,
                                **extra.get(case, {}),
                            }
                        )
                else:
                    item = {"image": f"volumes/{case}_image.nii.gz", "label": f"volumes/{case}_label.nii.gz"}
                    _save_volume(image.astype(np.float32), affine, tmp / item["image"])
                    _save_volume(label.astype(np.uint8), affine, tmp / item["label"])
                    items.append({**item, "case": case, **extra.get(case, {})})
                logger.info("%s: %s (%d slices)", split, case, image.shape[2])
        write_datalist(tmp / "datalist.json", content, labels=labels)
    return Path(dst) / "datalist.json"


def _case_number(case: int | str) -> int:
    match = re.fullmatch(r"(?:case|img)?0*(\d+)", str(case))
    if not match:
        raise ValueError(f"not a Synapse case id: {case!r} (expected e.g. 5, '0005' or 'case0005')")
    return int(match.group(1))


def _numbered(folder: Path, prefix: str) -> dict[int, Path]:
    """Case number -> ``<prefix>NNNN.nii[.gz]`` in ``folder`` (none when it does not exist)."""
    files = sorted(folder.iterdir()) if folder.is_dir() else []
    matches = ((re.fullmatch(prefix + r"(\d+)\.nii(\.gz)?", f.name), f) for f in files)
    return {int(m.group(1)): f for m, f in matches if m}


def find_synapse_cases(src: str | os.PathLike) -> dict[int, tuple[Path, Path]]:
    """Case number -> (image, label) of ``RawData/Training``; ``src`` is ``RawData``, its parent or
    ``Training``. Refuses an image without label (or the reverse) and a tree without cases."""
    src = Path(src)
    candidates = [src, src / "Training", src / "RawData" / "Training", src / "Abdomen" / "RawData" / "Training"]
    folder = next((c for c in candidates if (c / "img").is_dir()), None)
    if folder is None:
        raise FileNotFoundError(
            f"{src}: no Synapse RawData layout (expected RawData/Training/img/img0001.nii.gz "
            "and RawData/Training/label/label0001.nii.gz)"
        )
    images, labels = _numbered(folder / "img", "img"), _numbered(folder / "label", "label")
    if no_label := sorted(images.keys() - labels.keys()):
        image = images[no_label[0]]
        raise FileNotFoundError(
            f"{folder / 'label' / image.name.replace('img', 'label', 1)}: missing (label of {image})"
        )
    if no_image := sorted(labels.keys() - images.keys()):
        label = labels[no_image[0]]
        raise FileNotFoundError(f"{folder / 'img' / label.name.replace('label', 'img', 1)}: missing (image of {label})")
    if not images:
        raise FileNotFoundError(f"{folder / 'img'}: no imgNNNN.nii.gz files")
    return {n: (images[n], labels[n]) for n in sorted(images)}


def select_cases(available: Sequence, requested: Sequence | None, default: Sequence, what: str, source: Path) -> list:
    """Requested cases (all must exist) or the default ones that exist (at least one)."""
    if requested is not None:
        missing = [c for c in requested if c not in available]
        if missing:
            raise FileNotFoundError(f"{source}: {what} cases {missing} not found (found {sorted(available)})")
        chosen = list(requested)
    else:
        chosen = [c for c in default if c in available]
    if not chosen:
        raise ValueError(f"{source}: no {what} case found (default {what} cases: {list(default)})")
    return chosen


def prepare_synapse(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    train_cases: Sequence[int | str] | None = None,
    test_cases: Sequence[int | str] | None = None,
) -> Path:
    """Convert the official Synapse tree at ``src`` to the layout above at ``dst``; returns the datalist.

    Default split: the standard 18 training / 12 test cases (those present in ``src``).
    """
    found = find_synapse_cases(src)
    train = select_cases(
        list(found), train_cases and [_case_number(c) for c in train_cases], SYNAPSE_TRAIN_CASES, "training", Path(src)
    )
    test = select_cases(
        list(found), test_cases and [_case_number(c) for c in test_cases], SYNAPSE_TEST_CASES, "test", Path(src)
    )
    if overlap := sorted(set(train) & set(test)):
        raise ValueError(f"cases {overlap} are in both the training and the test split")

    paths = {f"case{n:04d}": found[n] for n in train + test}

    def load(case: str):
        image, label, affine = read_pair(*paths[case], SYNAPSE_RAW_TO_CLASS)
        return normalize_ct(image), label, affine

    splits = {"training": [f"case{n:04d}" for n in train], "test": [f"case{n:04d}" for n in test]}
    return write_slice_dataset(dst, splits, load, SYNAPSE_LABELS)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI of ``scripts/prepare_synapse.py``."""
    parser = argparse.ArgumentParser(
        description="Convert Synapse RawData (BTCV Abdomen) to 2D training slices "
        "and 3D test volumes (HU [-125, 275] -> [0, 1], 8 organs)."
    )
    parser.add_argument("--src", required=True, help="the RawData folder (holding Training/img, Training/label)")
    parser.add_argument("--dst", required=True, help="dataset folder to create (must not exist or be empty)")
    parser.add_argument("--train_cases", nargs="+", help="case numbers (default: the standard 18)")
    parser.add_argument("--test_cases", nargs="+", help="case numbers (default: the standard 12)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        datalist = prepare_synapse(args.src, args.dst, train_cases=args.train_cases, test_cases=args.test_cases)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        parser.error(str(e))
    print(datalist)
