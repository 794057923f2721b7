"""Cell Tracking Challenge (CTC) layout: read and write sequences, tracking GT and results; TRA score.

Layout of sequence ``01`` under ``ROOT``::

    ROOT/01/t000.tif ...                   frames, grey (H, W) or RGB (H, W, 3), uint8 / uint16
    ROOT/01_GT/TRA/man_track000.tif ...    uint16 instance masks, value = track label
    ROOT/01_GT/TRA/man_track.txt           one track per line: "L B E P" (label, first frame,
                                           last frame, parent label or 0)
    ROOT/01_GT/SEG/man_seg000.tif ...      optional segmentation masks
    ROOT/01_RES/mask000.tif ... + res_track.txt   results, same conventions

Frame numbers have 3 digits, 4 for sequences of more than 999 frames. A track is continuous: its
label is in every frame from B to E; a cell that vanishes and comes back continues as a new track
whose parent is the old one (:func:`split_track_gaps`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import tifffile

from monaiseg.utils.files import atomic_folders

FRAME_PATTERN = re.compile(r"t(\d{3,4})\.tif")
TRA_PATTERN = re.compile(r"man_track(\d{3,4})\.tif")
TRACK_FILE = "man_track.txt"
RESULT_TRACK_FILE = "res_track.txt"


def frame_digits(num_frames: int) -> int:
    """Width of the frame number in CTC file names: 3, or 4 for more than 999 frames."""
    return 4 if num_frames > 999 else 3


def label_video(masks: np.ndarray, what: str = "masks") -> np.ndarray:
    """Check instance masks (T, H, W) (integers in [0, 65535], T >= 1) and return them as uint16."""
    masks = np.asarray(masks)
    if masks.ndim != 3 or masks.shape[0] == 0:
        raise ValueError(f"{what} must be (T, H, W) with T >= 1, got shape {masks.shape}")
    if not (np.issubdtype(masks.dtype, np.integer) or masks.dtype == bool):
        raise ValueError(f"{what} must hold integer labels, got dtype {masks.dtype}")
    if masks.size and (masks.min() < 0 or masks.max() > 65535):
        raise ValueError(f"{what} labels must be in [0, 65535] (uint16), got [{masks.min()}, {masks.max()}]")
    return masks.astype(np.uint16)


def _frames_of_labels(masks: np.ndarray) -> dict[int, list[int]]:
    """Label -> sorted frames (ascending) where it appears, for masks (T, H, W)."""
    frames: dict[int, list[int]] = {}
    for t, frame in enumerate(masks):
        for label in np.unique(frame):
            if label:
                frames.setdefault(int(label), []).append(t)
    return dict(sorted(frames.items()))


def _check_parents(table: np.ndarray, parents: Mapping[int, int], source: str) -> None:
    """Every parent is 0 or a track that ends before its child begins; table rows are L B E P."""
    spans = {int(label): (int(b), int(e)) for label, b, e, _ in table}
    for child, parent in parents.items():
        if child not in spans:
            raise ValueError(f"{source}: child label {child} has no track")
        if parent == 0:
            continue
        if parent not in spans:
            raise ValueError(f"{source}: parent label {parent} of track {child} has no track")
        if spans[parent][1] >= spans[child][0]:
            raise ValueError(
                f"{source}: parent {parent} ends at frame {spans[parent][1]}, not before its child {child} "
                f"begins at frame {spans[child][0]}"
            )


def track_table(masks: np.ndarray, parents: Mapping[int, int] | None = None) -> np.ndarray:
    """CTC track table (n, 4) int64, rows ``L B E P`` sorted by label, from instance masks (T, H, W).

    B / E are the first / last frame where label L appears; P is ``parents.get(L, 0)``.
    Raises ValueError for a label missing from a frame between its first and last (see
    :func:`split_track_gaps`) and for a parent that is unknown or does not end before its child begins.
    """
    masks = label_video(masks)
    parents = {int(k): int(v) for k, v in (parents or {}).items()}
    rows = []
    for label, frames in _frames_of_labels(masks).items():
        if frames[-1] - frames[0] + 1 != len(frames):
            missing = sorted(set(range(frames[0], frames[-1] + 1)) - set(frames))
            raise ValueError(
                f"label {label} is absent from frame(s) {missing} between its first frame {frames[0]} and last "
                f"frame {frames[-1]}; CTC tracks are continuous (see split_track_gaps)"
            )
        rows.append((label, frames[0], frames[-1], parents.get(label, 0)))
    table = np.array(rows, dtype=np.int64).reshape(-1, 4)
    _check_parents(table, parents, "track_table")
    return table


def split_track_gaps(masks: np.ndarray, parents: Mapping[int, int] | None = None) -> tuple[np.ndarray, dict[int, int]]:
    """Relabel each reappearance of a label after missing frames as a new track whose parent is the previous run.

    Returns masks (T, H, W) uint16 and the parents mapping of the result: new labels count up from
    ``max label + 1``; a child's parent becomes the run of its parent that ends last before the child begins.
    """
    masks = label_video(masks)
    out = masks.copy()
    new_parents: dict[int, int] = {}
    runs: dict[int, list[tuple[int, int, int]]] = {}  # original label -> [(label, begin, end), ...]
    next_label = int(masks.max()) + 1
    for label, frames in _frames_of_labels(masks).items():
        starts = [0] + [i for i in range(1, len(frames)) if frames[i] != frames[i - 1] + 1]
        runs[label] = []
        for first, stop in zip(starts, starts[1:] + [len(frames)]):
            run_label = label
            if runs[label]:  # a reappearance: new label, child of the previous run
                if next_label > 65535:
                    raise ValueError(f"splitting the track gaps of label {label} needs labels beyond uint16")
                run_label, next_label = next_label, next_label + 1
                new_parents[run_label] = runs[label][-1][0]
                for t in frames[first:stop]:
                    out[t][masks[t] == label] = run_label
            runs[label].append((run_label, frames[first], frames[stop - 1]))
    for child, parent in (parents or {}).items():
        child, parent = int(child), int(parent)
        if child not in runs:
            raise ValueError(f"split_track_gaps: child label {child} is not in the masks")
        if parent == 0:
            continue
        if parent not in runs:
            raise ValueError(f"split_track_gaps: parent label {parent} of {child} is not in the masks")
        before = [r for r in runs[parent] if r[2] < runs[child][0][1]]
        new_parents[child] = before[-1][0] if before else parent  # no run before: track_table reports it
    return out, new_parents


def write_tracks(folder: Path, prefix: str, masks: np.ndarray, table: np.ndarray, track_file: str | None) -> None:
    """Write masks (T, H, W) uint16 as ``{prefix}NNN.tif`` and, if named, the track table into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    digits = frame_digits(len(masks))
    for t, frame in enumerate(masks):
        tifffile.imwrite(folder / f"{prefix}{t:0{digits}d}.tif", frame, photometric="minisblack")
    if track_file is not None:
        (folder / track_file).write_text("".join(f"{lab} {b} {e} {p}\n" for lab, b, e, p in table))


def write_ctc_gt(
    root: str | os.PathLike,
    name: str,
    frames: np.ndarray,
    masks: np.ndarray,
    parents: Mapping[int, int] | None = None,
    seg: bool = True,
) -> Path:
    """Write sequence ``root/name`` (frames (T, H, W) or (T, H, W, 3), uint8 / uint16) and ``root/name_GT``.

    ``name_GT/TRA`` gets the masks (T, H, W) as ``man_trackNNN.tif`` and ``man_track.txt``
    (:func:`track_table`), ``name_GT/SEG`` copies as ``man_segNNN.tif`` when ``seg``. Both folders
    appear together or not at all, and must not exist. Returns the sequence folder.
    """
    frames = np.asarray(frames)
    if frames.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"frames must be uint8 or uint16, got {frames.dtype}")
    if not (frames.ndim == 3 or (frames.ndim == 4 and frames.shape[-1] == 3)):
        raise ValueError(f"frames must be (T, H, W) or (T, H, W, 3), got shape {frames.shape}")
    masks = label_video(masks)
    if frames.shape[:3] != masks.shape:
        raise ValueError(f"frames {frames.shape} and masks {masks.shape} differ in (T, H, W)")
    table = track_table(masks, parents)
    root = Path(root)
    with atomic_folders(root / name, root / f"{name}_GT") as (seq_dir, gt_dir):
        digits = frame_digits(len(frames))
        photometric = "rgb" if frames.ndim == 4 else "minisblack"
        for t, frame in enumerate(frames):
            tifffile.imwrite(seq_dir / f"t{t:0{digits}d}.tif", frame, photometric=photometric)
        write_tracks(gt_dir / "TRA", "man_track", masks, table, TRACK_FILE)
        if seg:
            write_tracks(gt_dir / "SEG", "man_seg", masks, table, None)
    return root / name


def write_ctc_result(res_dir: str | os.PathLike, masks: np.ndarray, parents: Mapping[int, int] | None = None) -> Path:
    """Write tracking results (T, H, W) as ``res_dir/maskNNN.tif`` + ``res_track.txt``, atomically.

    Track gaps are split first (:func:`split_track_gaps`), as the CTC format requires, so a label that
    vanishes and reappears is written under a new label. ``res_dir`` must not exist. Returns ``res_dir``.
    """
    masks, parents = split_track_gaps(masks, parents)
    table = track_table(masks, parents)
    res_dir = Path(res_dir)
    with atomic_folders(res_dir) as (tmp,):
        write_tracks(tmp, "mask", masks, table, RESULT_TRACK_FILE)
    return res_dir


def _numbered_files(folder: Path, pattern: re.Pattern) -> list[Path]:
    """Files of ``folder`` whose names match ``pattern`` (group 1 = frame number), ordered 0..T-1."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    found: dict[int, Path] = {}
    for path in folder.iterdir():
        match = pattern.fullmatch(path.name)
        if match is None:
            continue
        index = int(match.group(1))
        if index in found:
            raise ValueError(f"{folder}: {found[index].name} and {path.name} are both frame {index}")
        found[index] = path
    missing = sorted(set(range(max(found, default=-1) + 1)) - set(found))
    if missing:
        raise ValueError(f"{folder}: frame(s) {missing} missing (files up to frame {max(found)} found)")
    return [found[t] for t in range(len(found))]


def _read_stack(files: list[Path], check: Callable[[Path, np.ndarray], None]) -> np.ndarray:
    """Read images, ``check(path, image)`` each, and stack them; they must share one shape and dtype."""
    images = []
    for f in files:
        images.append(tifffile.imread(f))
        check(f, images[-1])
    for f, image in zip(files, images):
        if (image.shape, image.dtype) != (images[0].shape, images[0].dtype):
            raise ValueError(
                f"{files[0]} is {images[0].shape} {images[0].dtype} but {f} is {image.shape} {image.dtype}; "
                "all frames must have the same size and type"
            )
    return np.stack(images)


def _check_frame(path: Path, image: np.ndarray) -> None:
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: dtype {image.dtype}, expected uint8 or uint16")
    if not (image.ndim == 2 or (image.ndim == 3 and image.shape[-1] in (1, 3))):
        raise ValueError(f"{path}: shape {image.shape}, expected (H, W) grey or (H, W, 3) RGB (1 or 3 channels)")


def _check_mask(path: Path, image: np.ndarray) -> None:
    if image.ndim != 2 or not np.issubdtype(image.dtype, np.integer):
        raise ValueError(f"{path}: expected a 2D integer label mask, got shape {image.shape} {image.dtype}")


def read_ctc_frames(seq_dir: str | os.PathLike) -> np.ndarray:
    """Frames ``tNNN.tif`` of a CTC sequence folder -> (T, H, W) grey or (T, H, W, 3) RGB, uint8 / uint16."""
    seq_dir = Path(seq_dir)
    files = _numbered_files(seq_dir, FRAME_PATTERN)
    if not files:
        raise FileNotFoundError(f"{seq_dir}: no frames tNNN.tif")
    frames = _read_stack(files, _check_frame)
    return frames[..., 0] if frames.ndim == 4 and frames.shape[-1] == 1 else frames


def _read_track_file(path: Path) -> np.ndarray:
    """Rows ``L B E P`` (n, 4) int64 of a CTC track file; malformed lines raise ValueError naming the line."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: track file not found")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 4 or not all(re.fullmatch(r"\d+", f) for f in fields):
            raise ValueError(f"{path}: line {number}: expected 4 non-negative integers 'L B E P', got {line!r}")
        label, begin, end, parent = map(int, fields)
        if label == 0 or begin > end:
            raise ValueError(f"{path}: line {number}: need label > 0 and begin <= end, got {line!r}")
        rows.append((label, begin, end, parent))
    table = np.array(rows, dtype=np.int64).reshape(-1, 4)
    labels, counts = np.unique(table[:, 0], return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{path}: label(s) {labels[counts > 1].tolist()} listed more than once")
    return table


def read_ctc_tracks(gt_dir: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Tracking GT of ``gt_dir`` (e.g. ``ROOT/01_GT``) -> masks (T, H, W) int32 and table (n, 4) int64 ``L B E P``.

    Checks that the masks of ``TRA/man_trackNNN.tif`` share one size and that ``TRA/man_track.txt``
    agrees with them: every frame it references exists, every label is in each frame of its span and
    nowhere else, and parents are listed tracks ending before their children begin.
    """
    tra = Path(gt_dir) / "TRA"
    files = _numbered_files(tra, TRA_PATTERN)
    if not files:
        raise FileNotFoundError(f"{tra}: no masks man_trackNNN.tif")
    masks = _read_stack(files, _check_mask)
    track_file = tra / TRACK_FILE
    table = _read_track_file(track_file)
    present = _frames_of_labels(masks)
    for label, begin, end, _parent in table.tolist():
        if end >= len(masks):
            raise ValueError(
                f"{track_file}: track {label} ends at frame {end} but {tra} has frames 0-{len(masks) - 1} only"
            )
        missing = sorted(set(range(begin, end + 1)) - set(present.get(label, [])))
        if missing:
            raise ValueError(f"{track_file}: label {label} is absent from {[files[t].name for t in missing]}")
        outside = [t for t in present.get(label, []) if not begin <= t <= end]
        if outside:
            raise ValueError(
                f"{track_file}: label {label} is in {[files[t].name for t in outside]}, outside its span {begin}-{end}"
            )
    unlisted = sorted(set(present) - set(table[:, 0].tolist()))
    if unlisted:
        raise ValueError(f"{track_file}: label(s) {unlisted} of the masks in {tra} are not listed")
    _check_parents(table, {int(lab): int(p) for lab, _, _, p in table}, str(track_file))
    return masks.astype(np.int32), table


def compact_labels(masks: np.ndarray, parents: Mapping[int, int]) -> tuple[np.ndarray, dict[int, int]]:
    """Renumber the labels of masks (T, H, W) to 1..n (0 stays background) and their parents alike."""
    labels = np.union1d(0, masks)
    new = {int(old): i for i, old in enumerate(labels)}
    return np.searchsorted(labels, masks).astype(np.uint16), {new[c]: new[p] for c, p in parents.items()}
