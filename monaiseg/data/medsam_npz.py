"""DeepLesion CT lesion crops in the ``.npz`` format redistributed with MedSAM2.

Each file holds ``imgs`` (D, H, W) uint8 (already windowed to [0, 255]), ``gts`` (D, H, W)
lesion mask and ``spacing``. ``spacing`` is in SimpleITK order (sx, sy, sz): the sample files
hold ``[0.314, 0.314, 5.0]`` (in-plane first, 5 mm slices last) and MedSAM2 writes its
NIfTI outputs with ``sitk.GetImageFromArray(imgs)`` then ``SetSpacing(spacing)``, i.e.
x = W, y = H, z = D. The files' ``origin`` and ``direction`` are placeholders (zero origin,
an x/y swap) that MedSAM2 does not apply either, so they are not used here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from monaiseg.data.datalist import save_nifti
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
