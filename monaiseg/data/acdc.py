"""ACDC cardiac cine MRI (MICCAI 2017) to the slice/volume layout of :mod:`monaiseg.data.synapse`.

Source: the official ``training/patient001/`` folders with ``Info.cfg`` (``ED: 1``, ``ES: 12``, ...),
``patient001_frame01.nii.gz`` and ``patient001_frame01_gt.nii.gz`` for the ED and the ES frame
(``testing/`` is read too when present). One case per patient frame (``patient001_frame01``),
labels 1 RV, 2 myocardium, 3 LV (already consecutive), each volume min-max scaled to [0, 1].
Default split: the TransUNet ACDC lists (70 training / 10 validation / 20 test patients of
``training/``); training frames become 2D slices, validation and test frames 3D volumes.
Datalist items also carry ``"patient"`` and ``"phase"`` (``"ED"`` or ``"ES"``).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from monaiseg.data.synapse import read_pair, select_cases, write_slice_dataset

ACDC_LABELS = {0: "background", 1: "RV", 2: "Myo", 3: "LV"}
ACDC_TEST_PATIENTS = (2, 3, 8, 9, 12, 14, 17, 24, 42, 48, 49, 53, 55, 64, 67, 79, 81, 88, 92, 95)
ACDC_VALIDATION_PATIENTS = (19, 21, 29, 33, 41, 50, 61, 71, 76, 80)
ACDC_TRAIN_PATIENTS = tuple(p for p in range(1, 101) if p not in ACDC_TEST_PATIENTS + ACDC_VALIDATION_PATIENTS)


def normalize_mr(image: np.ndarray, path: str | os.PathLike = "image") -> np.ndarray:
    """Volume -> float32 in [0, 1] by its own minimum and maximum; refuses a constant volume."""
    low, high = float(image.min()), float(image.max())
    if high <= low:
        raise ValueError(f"{path}: constant intensity {low}, cannot normalise")
    return ((image - low) / (high - low)).astype(np.float32)


def read_info(path: Path) -> dict[str, str]:
    """``Info.cfg`` (``key: value`` lines) -> dict; refuses a missing file or missing ED / ES."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    info = dict(line.split(":", 1) for line in path.read_text().splitlines() if ":" in line)
    info = {k.strip(): v.strip() for k, v in info.items()}
    for key in ("ED", "ES"):
        if not info.get(key, "").isdigit():
            raise ValueError(f"{path}: no integer {key} frame (found {info.get(key)!r})")
    return info


def find_acdc_patients(src: str | os.PathLike) -> dict[int, Path]:
    """Patient number -> folder, from ``src/{training,testing}/patientNNN`` (or ``src/database/...``,
    or patient folders directly in ``src``)."""
    src = Path(src)
    roots = [src / "training", src / "testing", src / "database" / "training", src / "database" / "testing", src]
    patients: dict[int, Path] = {}
    for root in roots:
        for folder in sorted(root.glob("patient*")) if root.is_dir() else []:
            if (m := re.fullmatch(r"patient(\d{3})", folder.name)) and folder.is_dir():
                patients.setdefault(int(m.group(1)), folder)
    if not patients:
        raise FileNotFoundError(f"{src}: no ACDC patient folders (expected training/patient001/Info.cfg)")
    return patients


def patient_frames(folder: Path) -> dict[str, tuple[Path, Path, str]]:
    """Case name -> (image, ground truth, phase) of the ED and ES frames of one patient folder."""
    info = read_info(folder / "Info.cfg")
    frames: dict[str, tuple[Path, Path, str]] = {}
    for phase in ("ED", "ES"):
        case = f"{folder.name}_frame{int(info[phase]):02d}"
        for path in (folder / f"{case}.nii.gz", folder / f"{case}_gt.nii.gz"):
            if not path.is_file():
                raise FileNotFoundError(f"{path}: missing ({phase} frame of {folder / 'Info.cfg'})")
        frames.setdefault(case, (folder / f"{case}.nii.gz", folder / f"{case}_gt.nii.gz", phase))
    return frames


def prepare_acdc(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    train_patients: Sequence[int] | None = None,
    validation_patients: Sequence[int] | None = None,
    test_patients: Sequence[int] | None = None,
) -> Path:
    """Convert the official ACDC tree at ``src`` to the slice/volume layout at ``dst``; returns the
    datalist. Patients default to the TransUNet split (those present in ``src``); the validation
    split is left out when none of its patients is present."""
    found, src = find_acdc_patients(src), Path(src)
    available = list(found)
    if validation_patients is None:
        validation = [p for p in ACDC_VALIDATION_PATIENTS if p in found]
    else:
        validation = select_cases(available, validation_patients, (), "validation", src) if validation_patients else []
    splits = {
        "training": select_cases(available, train_patients, ACDC_TRAIN_PATIENTS, "training", src),
        "validation": validation,
        "test": select_cases(available, test_patients, ACDC_TEST_PATIENTS, "test", src),
    }
    seen: dict[int, str] = {}
    for split, patients in splits.items():
        for p in patients:
            if p in seen:
                raise ValueError(f"patient{p:03d} is in both the {seen[p]} and the {split} split")
            seen[p] = split
    frames = {p: patient_frames(found[p]) for p in seen}  # every Info.cfg is checked before writing

    paths = {case: (image, gt) for p in seen for case, (image, gt, _) in frames[p].items()}
    extra = {
        case: {"patient": f"patient{p:03d}", "phase": phase} for p in seen for case, (_, _, phase) in frames[p].items()
    }

    def load(case: str):
        image, label, affine = read_pair(*paths[case], {v: v for v in ACDC_LABELS})
        return normalize_mr(image, paths[case][0]), label, affine

    cases = {split: [case for p in patients for case in frames[p]] for split, patients in splits.items() if patients}
    return write_slice_dataset(dst, cases, load, ACDC_LABELS, extra)


def main(argv: Sequence[str] | None = None) -> None:
    """CLI of ``scripts/prepare_acdc.py``."""
    parser = argparse.ArgumentParser(
        description="Convert ACDC (patient folders with ED/ES frames and ground "
        "truth) to 2D training slices and 3D validation/test volumes."
    )
    parser.add_argument("--src", required=True, help="folder holding training/patient001/... (the 'database' folder)")
    parser.add_argument("--dst", required=True, help="dataset folder to create (must not exist or be empty)")
    for split, default in (("train", "70"), ("validation", "10"), ("test", "20")):
        parser.add_argument(
            f"--{split}_patients", nargs="+", type=int, help=f"patient numbers (default: the TransUNet {default})"
        )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        datalist = prepare_acdc(
            args.src,
            args.dst,
            train_patients=args.train_patients,
            validation_patients=args.validation_patients,
            test_patients=args.test_patients,
        )
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        parser.error(str(e))
    print(datalist)
