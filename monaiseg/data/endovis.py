"""EndoVis2018 / EndoVis2017 instrument-type segmentation: class lists and converters from the
official release layouts to our layout (see `monaiseg.data.synthetic_surgical`):

```
DST/datalist.json (2018) or datalist_fold{0..3}.json (2017): {"classes": [...], "training": [...],
                  "validation": [...]}, items {"image", "label", "sequence", "frame"}
DST/frames/<seq>/<frame:05d>.png   RGB uint8
DST/masks/<seq>/<frame:05d>.png    uint8 class ids (0 background, 1..7 as in the class list)
```

EndoVis2018 (`convert_endovis2018`): the 2018 Robotic Scene Segmentation release with ISINet's
instrument-type annotations, the data SurgicalSAM uses (``SRC/<release folder>/seq_N/left_frames/
frameNNN.png`` and ``SRC/<release folder>/seq_N/instrument_labels*/...frameNNN..._classC_instI.png``,
one binary mask per instrument instance, the class id C in the file name, as ISINet's
`organize2018.py` reads them). Validation sequences 2, 5, 9, 15 (ISINet's split, used by
SurgicalSAM); frames are 1024 x 1280 and are not cropped.

EndoVis2017 (`convert_endovis2017`): the 2017 Robotic Instrument Segmentation training release
(``SRC/instrument_dataset_K/left_frames/frameNNN.png`` 1080 x 1920 and
``SRC/instrument_dataset_K/ground_truth/<Instrument_name>_labels/frameNNN.png``, K = 1..8). As
ISINet's `organize2017.py` / TernausNet's `prepare_data.py` (which SurgicalSAM follows), frames
and masks are cropped to rows 28..1051, columns 320..1599 (1024 x 1280, the black borders
removed); an instrument folder's class is the first class whose name (spaces as underscores)
occurs in the folder name ("Maryland_Bipolar_Forceps_labels" -> Bipolar Forceps, "Other_labels"
-> Others); folders are painted in sorted order, later ones over earlier ones. Folds are
TernausNet's: validation sequences {0: 1, 3; 1: 2, 5; 2: 4, 8; 3: 6, 7}.

Both converters write through `atomic_folders` (nothing is left on error) and raise one error
naming the file for: a missing folder, a frame of another size than the sequence's first frame,
a mask of another size than its frame, a class id outside the class list, an EndoVis2018 label
without its frame.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from monaiseg.utils.files import atomic_folders

ENDOVIS2018_CLASSES = (
    "Bipolar Forceps",
    "Prograsp Forceps",
    "Large Needle Driver",
    "Monopolar Curved Scissors",
    "Ultrasound Probe",
    "Suction Instrument",
    "Clip Applier",
)
ENDOVIS2017_CLASSES = (
    "Bipolar Forceps",
    "Prograsp Forceps",
    "Large Needle Driver",
    "Vessel Sealer",
    "Grasping Retractor",
    "Monopolar Curved Scissors",
    "Others",
)
ENDOVIS2018_VALIDATION = ("seq_2", "seq_5", "seq_9", "seq_15")
ENDOVIS2017_FOLDS = {0: (1, 3), 1: (2, 5), 2: (4, 8), 3: (6, 7)}
ENDOVIS2017_CROP = (28, 320, 1024, 1280)  # top, left, height, width
_FOLDER_NAMES_2017 = (
    "Bipolar_Forceps",
    "Prograsp_Forceps",
    "Large_Needle_Driver",
    "Vessel_Sealer",
    "Grasping_Retractor",
    "Monopolar_Curved_Scissors",
    "Other",
)


def check_class_map(mask: np.ndarray, num_classes: int, path: str | Path) -> np.ndarray:
    """`mask` (H, W) if all its values lie in 0..num_classes, else ValueError naming `path`."""
    bad = np.unique(mask[(mask < 0) | (mask > num_classes)])
    if bad.size:
        raise ValueError(f"{path}: class ids {bad.tolist()} outside the class list (0 background, 1..{num_classes})")
    return mask


def _read_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as image:
            if image.mode not in ("RGB", "RGBA"):
                raise ValueError(f"{path}: expected an RGB frame, got PIL mode {image.mode}")
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: cannot be read as an image ({exc})") from exc


def _read_binary(path: Path) -> np.ndarray:
    """(H, W) bool foreground of a mask file (grey, or colour: any channel > 0)."""
    try:
        with Image.open(path) as image:
            mask = np.asarray(image)
    except (OSError, SyntaxError) as exc:
        raise ValueError(f"{path}: cannot be read as a mask ({exc})") from exc
    return (mask.max(axis=2) if mask.ndim == 3 else mask) > 0


def _frame_index(path: Path) -> int:
    match = re.fullmatch(r"frame(\d+)", path.stem)
    if match is None:
        raise ValueError(f"{path}: frame files must be named frame<number>.png")
    return int(match.group(1))


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{path}: missing {what} folder")
    return path


def _check_size(path: Path, array: np.ndarray, expected: tuple[int, int] | None, what: str) -> tuple[int, int]:
    size = (array.shape[0], array.shape[1])
    if expected is not None and size != expected:
        why = "frames of mixed sizes" if what == "frame" else "mask and frame sizes differ"
        raise ValueError(
            f"{path}: {what} is {size[0]}x{size[1]} but the sequence's frames are {expected[0]}x{expected[1]} ({why})"
        )
    return size


def _write(tmp: Path, seq: str, index: int, image: np.ndarray, mask: np.ndarray) -> dict:
    rel_image, rel_mask = f"frames/{seq}/{index:05d}.png", f"masks/{seq}/{index:05d}.png"
    for rel, array in ((rel_image, image), (rel_mask, mask)):
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(tmp / rel)
    return {"image": rel_image, "label": rel_mask, "sequence": seq, "frame": index}


def _write_datalist(path: Path, classes: Sequence[str], training: list[dict], validation: list[dict]) -> None:
    content = {"classes": list(classes), "training": training, "validation": validation}
    path.write_text(json.dumps(content, indent=4) + "\n")


def _find_2018_sequences(src: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for left in sorted(src.glob("*/left_frames")) + sorted(src.glob("*/*/left_frames")):
        seq = left.parent
        if not re.fullmatch(r"seq_\d+", seq.name):
            continue
        if seq.name in found:
            raise ValueError(f"{seq}: sequence {seq.name} also found at {found[seq.name]}")
        found[seq.name] = seq
    if not found:
        raise FileNotFoundError(f"{src}: no EndoVis2018 sequence folders (<release>/seq_N/left_frames) found")
    return found


def _labels_folder(seq: Path, name: str | None) -> Path:
    if name is not None:
        return _folder(seq / name, "instrument label")
    folders = sorted(p for p in seq.glob("instrument_labels*") if p.is_dir())
    if len(folders) != 1:
        found = [p.name for p in folders] or "none"
        raise FileNotFoundError(
            f"{seq}: expected one instrument_labels* folder (ISINet's instrument-type "
            f"annotations), found {found}; pass labels_folder to choose"
        )
    return folders[0]


def convert_endovis2018(
    src: str | Path,
    dst: str | Path,
    labels_folder: str | None = None,
    validation: Sequence[str] = ENDOVIS2018_VALIDATION,
) -> Path:
    """EndoVis2018 + ISINet instrument-type labels (module docstring) -> our layout at `dst`
    (must not exist or be empty), `datalist.json` with ISINet's split. Returns `dst`."""
    src, dst = Path(src), Path(dst)
    _folder(src, "EndoVis2018 source")
    sequences = _find_2018_sequences(src)
    num_classes = len(ENDOVIS2018_CLASSES)
    items: dict[str, list[dict]] = {"training": [], "validation": []}
    with atomic_folders(dst) as (tmp,):
        for name in sorted(sequences, key=lambda s: int(s.split("_")[1])):
            seq = sequences[name]
            frames = sorted(_folder(seq / "left_frames", "left_frames").glob("*.png"), key=_frame_index)
            if not frames:
                raise FileNotFoundError(f"{seq / 'left_frames'}: no frame*.png files")
            labels = _labels_folder(seq, labels_folder)
            by_frame: dict[str, list[tuple[int, Path]]] = {}
            for path in sorted(labels.glob("*.png")):
                frame, cls = re.search(r"frame\d+", path.name), re.search(r"class(\d+)", path.name)
                if frame is None or cls is None:
                    raise ValueError(
                        f"{path}: instrument label files must name the frame and the class "
                        "(e.g. frame000_class2_inst0.png)"
                    )
                if not 1 <= int(cls.group(1)) <= num_classes:
                    raise ValueError(
                        f"{path}: class id {cls.group(1)} outside the class list "
                        f"(1..{num_classes}: {', '.join(ENDOVIS2018_CLASSES)})"
                    )
                by_frame.setdefault(frame.group(0), []).append((int(cls.group(1)), path))
            orphans = sorted(set(by_frame) - {f.stem for f in frames})
            if orphans:
                raise ValueError(
                    f"{by_frame[orphans[0]][0][1]}: instrument label of {orphans[0]}, which has no frame "
                    f"in {seq / 'left_frames'}"
                )
            size = None
            for path in frames:
                image = _read_rgb(path)
                size = _check_size(path, image, size, "frame")
                mask = np.zeros(size, np.uint8)
                for cls_id, label in by_frame.get(path.stem, []):
                    region = _read_binary(label)
                    _check_size(label, region, size, "mask")
                    mask[region] = cls_id
                split = "validation" if name in validation else "training"
                items[split].append(_write(tmp, name, _frame_index(path), image, mask))
        _write_datalist(tmp / "datalist.json", ENDOVIS2018_CLASSES, items["training"], items["validation"])
    return dst


def _class_2017(folder: Path) -> int:
    for cls, name in enumerate(_FOLDER_NAMES_2017, start=1):
        if name in folder.name:
            return cls
    raise ValueError(
        f"{folder}: instrument folder name matches none of the EndoVis2017 classes ({', '.join(_FOLDER_NAMES_2017)})"
    )


def _crop(array: np.ndarray, crop: tuple[int, int, int, int] | None, path: Path) -> np.ndarray:
    if crop is None:
        return array
    top, left, height, width = crop
    if array.shape[0] < top + height or array.shape[1] < left + width:
        raise ValueError(
            f"{path}: {array.shape[0]}x{array.shape[1]} is smaller than the crop box rows "
            f"{top}..{top + height - 1}, columns {left}..{left + width - 1}"
        )
    return array[top : top + height, left : left + width]


def convert_endovis2017(
    src: str | Path, dst: str | Path, crop: tuple[int, int, int, int] | None = ENDOVIS2017_CROP
) -> Path:
    """EndoVis2017 training release (module docstring) -> our layout at `dst` (must not exist or
    be empty) with `datalist_fold{0..3}.json`. `crop`: (top, left, height, width) or None. Returns `dst`."""
    src, dst = Path(src), Path(dst)
    _folder(src, "EndoVis2017 source")
    per_sequence: dict[int, list[dict]] = {}
    with atomic_folders(dst) as (tmp,):
        for k in range(1, 9):
            root = _folder(src / f"instrument_dataset_{k}", f"instrument_dataset_{k}")
            frames = sorted(_folder(root / "left_frames", "left_frames").glob("*.png"), key=_frame_index)
            if not frames:
                raise FileNotFoundError(f"{root / 'left_frames'}: no frame*.png files")
            folders = sorted(p for p in _folder(root / "ground_truth", "ground_truth").iterdir() if p.is_dir())
            classes = [(_class_2017(folder), folder) for folder in folders]
            seq, size, per_sequence[k] = f"seq_{k}", None, []
            for path in frames:
                image = _read_rgb(path)
                size = _check_size(path, image, size, "frame")
                mask = np.zeros(size, np.uint8)
                for cls, folder in classes:
                    label = folder / path.name
                    if not label.is_file():
                        raise FileNotFoundError(f"{label}: missing mask of frame {path}")
                    region = _read_binary(label)
                    _check_size(label, region, size, "mask")
                    mask[region] = cls
                per_sequence[k].append(
                    _write(tmp, seq, _frame_index(path), _crop(image, crop, path), _crop(mask, crop, path))
                )
        for fold, held_out in ENDOVIS2017_FOLDS.items():
            training = [item for k, seq_items in per_sequence.items() if k not in held_out for item in seq_items]
            validation = [item for k in held_out for item in per_sequence[k]]
            _write_datalist(tmp / f"datalist_fold{fold}.json", ENDOVIS2017_CLASSES, training, validation)
    return dst


def require_labels(items: list[dict], query_mode: str) -> list[dict]:
    """`items` unchanged; in "gt" mode every item needs a `label` (ValueError naming the first without one)."""
    if query_mode == "gt":
        for item in items:
            if not item.get("label"):
                raise ValueError(
                    f"{item.get('image')}: query_mode 'gt' queries the classes of the ground truth, but "
                    "the item has no 'label'; give one (frame folder / video of class-id masks) or use "
                    "query_mode 'all'"
                )
    return items


def main(dataset: str, argv: Sequence[str] | None = None) -> None:
    """CLI of ``scripts/prepare_<dataset>.py``, ``dataset`` "endovis2018" or "endovis2017": ``SRC DST``,
    prints the frames per split (per fold for 2017) and the datalist (2018) or dataset folder (2017); bad
    input exits with status 2."""
    descriptions = {
        "endovis2018": "Convert EndoVis2018 with ISINet's instrument-type labels to the surgical dataset layout.",
        "endovis2017": "Convert the EndoVis2017 training release to the surgical dataset layout with 4 folds.",
    }
    parser = argparse.ArgumentParser(description=descriptions[dataset])
    if dataset == "endovis2018":
        parser.add_argument("src", help="EndoVis2018 release folder with ISINet's instrument labels")
    else:
        parser.add_argument("src", help="EndoVis2017 training folder holding instrument_dataset_1..8")
    parser.add_argument("dst", help="dataset folder to create (must not exist or be empty)")
    if dataset == "endovis2018":
        parser.add_argument(
            "--labels_folder",
            default=None,
            help="name of the per-sequence instrument label folder (default: the one instrument_labels*)",
        )
    else:
        parser.add_argument("--no_crop", action="store_true", help="keep the black borders (no 1024x1280 crop)")
    args = parser.parse_args(argv)
    try:
        if dataset == "endovis2018":
            dst = convert_endovis2018(args.src, args.dst, labels_folder=args.labels_folder)
        else:
            dst = convert_endovis2017(args.src, args.dst, crop=None if args.no_crop else ENDOVIS2017_CROP)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        parser.error(str(e))
    if dataset == "endovis2018":
        content = json.loads((dst / "datalist.json").read_text())
        print(f"training: {len(content['training'])} frames, validation: {len(content['validation'])} frames")
        print(dst / "datalist.json")
        return
    for fold in range(4):
        content = json.loads((dst / f"datalist_fold{fold}.json").read_text())
        print(
            f"fold {fold}: training {len(content['training'])} frames, validation {len(content['validation'])} frames"
        )
    print(dst)
