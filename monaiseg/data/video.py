"""Read videos (MP4/AVI or a folder of frames) and write per-frame label masks as PNG."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from monaiseg.utils.files import atomic_folders

FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def natural_key(name: str) -> list[int | str]:
    """Sort key that orders digit runs by value: ``2.png`` < ``10.png``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def read_video(path: str | os.PathLike) -> tuple[np.ndarray, float | None, list[str]]:
    """Read all frames of a video file or a folder of frame images.

    Returns:
        frames (T, H, W, 3) uint8 RGB; fps (``None`` for a folder or when the file has none);
        names: frame stems for a folder (natural sort), ``"00000"``, ``"00001"``, ... for a video.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: video or frame folder not found.")
    if path.is_dir():
        return _read_frame_folder(path)
    cap = cv2.VideoCapture(str(path))
    try:
        fps = cap.get(cv2.CAP_PROP_FPS) if cap.isOpened() else 0.0
        frames = []
        ok, frame = cap.read()
        while ok:
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            ok, frame = cap.read()
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"{path}: no frame could be decoded (not a video, corrupt or truncated file).")
    return np.stack(frames), (float(fps) if fps > 0 else None), [f"{i:05d}" for i in range(len(frames))]


def _read_frame_folder(folder: Path) -> tuple[np.ndarray, None, list[str]]:
    files = [p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES]
    files.sort(key=lambda p: natural_key(p.name))
    if not files:
        raise ValueError(f"{folder}: folder has no frame images ({', '.join(FRAME_SUFFIXES)}).")
    frames: list[np.ndarray] = []
    for f in files:
        frame = cv2.imread(str(f), cv2.IMREAD_COLOR)
        if frame is None:
            raise ValueError(f"{f}: unreadable image.")
        if frames and frame.shape != frames[0].shape:
            raise ValueError(
                f"{folder}: frames have different sizes: {files[0].name} is {frames[0].shape[1]}x{frames[0].shape[0]}, "
                f"{f.name} is {frame.shape[1]}x{frame.shape[0]} (width x height)."
            )
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return np.stack(frames), None, [f.stem for f in files]


def write_mask_frames(masks: np.ndarray, out_dir: str | os.PathLike, names: Sequence[str]) -> Path:
    """Write label masks (T, H, W) with values 0-255 as ``out_dir/<name>.png`` (uint8), atomically.

    The PNGs go to a temporary sibling folder that is renamed to ``out_dir`` once all are written;
    nothing is left behind on error. An existing non-empty ``out_dir`` is never overwritten.
    """
    masks = np.asarray(masks)
    out_dir = Path(out_dir)
    if masks.ndim != 3 or not (np.issubdtype(masks.dtype, np.integer) or masks.dtype == bool):
        raise ValueError(f"{out_dir}: masks must be an integer array (T, H, W), got {masks.dtype} {masks.shape}.")
    if len(names) != len(masks) or len(set(names)) != len(names):
        raise ValueError(
            f"{out_dir}: need {len(masks)} distinct frame names, got {len(names)} ({len(set(names))} distinct)."
        )
    if masks.size and (masks.min() < 0 or masks.max() > 255):
        raise ValueError(f"{out_dir}: mask values must be in 0-255 for uint8 PNG, got {masks.min()}..{masks.max()}.")
    with atomic_folders(out_dir) as (tmp,):
        for mask, name in zip(masks.astype(np.uint8), names):
            if not cv2.imwrite(str(tmp / f"{name}.png"), mask):
                raise OSError(f"{out_dir}: could not write frame {name}.png.")
    return out_dir
