"""MedSAM's ``.npz`` layouts: DeepLesion CT lesion crops (MedSAM2) and the CVPR 2024 "MedSAM on
Laptop" challenge cases (LiteMedSAM).

DeepLesion: each file holds ``imgs`` (D, H, W) uint8 (already windowed to [0, 255]), ``gts``
(D, H, W) lesion mask and ``spacing``. ``spacing`` is in SimpleITK order (sx, sy, sz): the sample files
hold ``[0.314, 0.314, 5.0]`` (in-plane first, 5 mm slices last) and MedSAM2 writes its
NIfTI outputs with ``sitk.GetImageFromArray(imgs)`` then ``SetSpacing(spacing)``, i.e.
x = W, y = H, z = D. The files' ``origin`` and ``direction`` are placeholders (zero origin,
an x/y swap) that MedSAM2 does not apply either, so they are not used here.

Challenge cases (as ``CVPR24_LiteMedSAM_infer.py`` reads them): ``imgs`` (H, W, 3) uint8 with
``boxes`` (N, 4) ``[x_min, y_min, x_max, y_max]`` for a 2D image, or ``imgs`` (D, H, W) with
``boxes`` (N, 6) ``[x_min, y_min, z_min, x_max, y_max, z_max]`` for a 3D volume (x = column,
y = row, z = slice; inclusive pixel indices). The prediction is a file of the same name holding
``segs`` uint8 of the image's spatial shape, box i (1-based, file order) -> value i.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from monaiseg.data.datalist import save_nifti
from monaiseg.prompts import ObjectPrompt, check_box
from monaiseg.utils.files import atomic_outputs


def load_deeplesion_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read one DeepLesion ``.npz``.

    Returns ``image`` (D, H, W) uint8, ``label`` (D, H, W) uint8 and ``spacing`` (3,) float64
    in array order (sz, sy, sx) mm, i.e. the file's (sx, sy, sz) reversed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DeepLesion file not found: {path}")
    try:
        with np.load(path) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as e:  # not a zip, truncated, pickled object, ...
        raise ValueError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from e
    missing = {"imgs", "gts", "spacing"} - set(arrays)
    if missing:
        raise ValueError(f"{path}: missing keys {sorted(missing)} (found {sorted(arrays)})")
    image, label = arrays["imgs"], arrays["gts"]
    spacing = np.asarray(arrays["spacing"], np.float64)
    if image.ndim != 3 or label.shape != image.shape or spacing.shape != (3,):
        raise ValueError(
            f"{path}: expected imgs and gts of one (D, H, W) shape and 3 spacings, got imgs "
            f"{image.shape}, gts {label.shape}, spacing {spacing.shape}"
        )
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: imgs must be uint8 (already windowed), got {image.dtype}")
    return {"image": image, "label": label.astype(np.uint8), "spacing": spacing[::-1].copy()}


def deeplesion_npz_to_nifti(npz_path: str | os.PathLike, out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Convert one ``.npz`` to ``<stem>_image.nii.gz`` and ``<stem>_label.nii.gz`` in ``out_dir``.

    The NIfTI arrays are (x, y, z) = (W, H, D), the transpose of the ``.npz`` (D, H, W), with
    affine ``diag(sx, sy, sz)``, so a reader slicing the last axis sees D slices of H x W.
    Both files appear together or not at all. Returns ``(image_path, label_path)``.
    """
    case = load_deeplesion_npz(npz_path)
    stem = Path(npz_path).name.removesuffix(".npz")
    paths = Path(out_dir) / f"{stem}_image.nii.gz", Path(out_dir) / f"{stem}_label.nii.gz"
    spacing_xyz = case["spacing"][::-1]
    with atomic_outputs(*paths) as (image_tmp, label_tmp):
        save_nifti(case["image"].transpose(2, 1, 0), spacing_xyz, image_tmp)
        save_nifti(case["label"].transpose(2, 1, 0), spacing_xyz, label_tmp)
    return paths


def _npz_arrays(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{name: (shape, dtype)} of the arrays of an ``.npz`` file, read from their headers only."""
    try:
        with zipfile.ZipFile(path) as archive:
            arrays = {}
            for member in archive.namelist():
                with archive.open(member) as handle:
                    version = np.lib.format.read_magic(handle)
                    read_header = (
                        np.lib.format.read_array_header_1_0
                        if version == (1, 0)
                        else np.lib.format.read_array_header_2_0
                    )
                    shape, _, dtype = read_header(handle)
                arrays[member.removesuffix(".npy")] = (tuple(shape), dtype)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc})") from None
    return arrays


def check_challenge_npz(path: str | os.PathLike) -> tuple[tuple[int, ...], np.ndarray]:
    """``(imgs shape, boxes (N, 4 | 6) float64)`` of a challenge case, checked without reading the
    image data: ``imgs`` and ``boxes`` present, (H, W, 3) / (H, W) with width-4 boxes or (D, H, W)
    with width-6 boxes, every box inside the image and not reversed (`monaiseg.prompts.check_box`:
    inclusive pixels, a 1-pixel-thin box is valid; z_min <= z_max). A box edge on the image border
    (x_max = W, y_max = H) is clipped to W - 1, H - 1.
    ValueError (FileNotFoundError) naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"challenge case {path} not found")
    arrays = _npz_arrays(path)
    missing = [k for k in ("imgs", "boxes") if k not in arrays]
    if missing:
        raise ValueError(f"{path}: missing key(s) {missing} (found {sorted(arrays)}); a case needs 'imgs' and 'boxes'")
    shape = arrays["imgs"][0]
    with np.load(path) as npz:
        boxes = np.asarray(npz["boxes"], dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 6) or len(boxes) == 0:
        raise ValueError(
            f"{path}: boxes have shape {boxes.shape}: expected (N, 4) [x_min, y_min, x_max, y_max] for a 2D image "
            "or (N, 6) [x_min, y_min, z_min, x_max, y_max, z_max] for a 3D volume, N >= 1"
        )
    is_3d = boxes.shape[1] == 6
    if is_3d and len(shape) != 3:
        raise ValueError(f"{path}: imgs has shape {shape}; 3D boxes (N, 6) need a (D, H, W) volume")
    if not is_3d and not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 3)):
        raise ValueError(f"{path}: imgs has shape {shape}; 2D boxes (N, 4) need an (H, W, 3) or (H, W) image")
    depth, height, width = shape if is_3d else (1, *shape[:2])
    xy = boxes[:, [0, 1, 3, 4]] if is_3d else boxes
    xy[:, 2] = np.where(xy[:, 2] == width, width - 1, xy[:, 2])
    xy[:, 3] = np.where(xy[:, 3] == height, height - 1, xy[:, 3])
    for n, (x0, y0, x1, y1) in enumerate(xy):
        where = f"{path}: box #{n} {boxes[n].tolist()}"
        try:
            check_box((x0, y0, x1, y1), width, height)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if is_3d and not 0 <= boxes[n, 2] <= boxes[n, 5] < depth:
            raise ValueError(f"{where}: slices z_min..z_max are outside the volume (0..{depth - 1}) or reversed")
    if is_3d:
        boxes[:, [0, 1, 3, 4]] = xy
    return shape, boxes


def challenge_prompts(boxes: np.ndarray) -> list[ObjectPrompt]:
    """One `ObjectPrompt` per box row, object i + 1 (file order). 3D rows: key slice
    int((z_max - z_min) / 2 + z_min) as upstream, `frame_range` (z_min, z_max)."""
    prompts = []
    for i, row in enumerate(boxes):
        if len(row) == 4:
            x0, y0, x1, y1 = (float(v) for v in row)
            prompts.append(ObjectPrompt(obj_id=i + 1, frame=0, box=(x0, y0, x1, y1)))
        else:
            x0, y0, z0, x1, y1, z1 = (float(v) for v in row)
            prompts.append(
                ObjectPrompt(
                    obj_id=i + 1,
                    frame=int((z1 - z0) / 2 + z0),
                    box=(x0, y0, x1, y1),
                    frame_range=(int(z0), int(z1)),
                )
            )
    return prompts


def load_challenge_npz(path: str | os.PathLike) -> dict:
    """A challenge case as a volume: ``image`` (C, H, W, D) in the file's dtype (2D: (3, H, W, 1)
    or (1, H, W, 1); 3D: (1, H, W, D)), ``prompts`` (`challenge_prompts`), ``is_3d``."""
    shape, boxes = check_challenge_npz(path)
    with np.load(path) as npz:
        imgs = np.asarray(npz["imgs"])
    if imgs.ndim == 2:
        imgs = imgs[..., None]
    image = imgs.transpose(2, 0, 1)[..., None] if boxes.shape[1] == 4 else imgs.transpose(1, 2, 0)[None]
    return {"image": np.ascontiguousarray(image), "prompts": challenge_prompts(boxes), "is_3d": boxes.shape[1] == 6}


def challenge_items(inputs: str | os.PathLike | Sequence[str | os.PathLike]) -> list[dict]:
    """Inference items ``[{"image": path}]`` for a folder of ``*.npz`` cases (sorted) or a list of
    files; every case is checked (`check_challenge_npz`) before any runs, so a bad one stops the
    run with one error naming it and nothing written."""
    if isinstance(inputs, (str, os.PathLike)) and Path(inputs).is_dir():
        paths = sorted(Path(inputs).glob("*.npz"))
        if not paths:
            raise FileNotFoundError(f"no .npz case in {inputs}")
    else:
        paths = [Path(p) for p in ([inputs] if isinstance(inputs, (str, os.PathLike)) else inputs)]
    for path in paths:
        check_challenge_npz(path)
    return [{"image": str(p)} for p in paths]


def save_challenge_segs(segs: np.ndarray, path: str | os.PathLike) -> Path:
    """Write ``segs`` (uint8, the image's spatial shape) as the challenge's prediction file, atomically."""
    with atomic_outputs(path) as (tmp,):
        np.savez_compressed(tmp, segs=np.asarray(segs, dtype=np.uint8))
    return Path(path)
