"""Prompts of MONAI Label requests, checked against the image, in the forms our inferers take.

Client conventions (both in voxel indices of the image as MONAI / ITK read it, IJK; a 2D PNG is
(I, J) = (column x, row y)):
- 3D Slicer: "foreground" / "background": [[i, j, k], ...]; "roi": [i0, j0, i1, j1, k0, k1]
  (a box on slices k0..k1; it prompts the middle slice; with k0 < k1, as its object's only prompt,
  it is also the object's slice range, which box carry covers exactly, as LiteMedSAM's 3D boxes);
  "label": the segment name.
- OHIF: "foreground" / "background" per slice: [[i, j], ...] with "slice": k (or [i, j, k]).
- Several objects in one request (our extension): "objects": [{"label": name or value,
  "foreground": ..., "background": ..., "roi": ..., "slice": ...}, ...], one label value per object;
  entries of one label on other slices add key slices to that object (a volume's object prompted
  on several slices, e.g. with one box each).
On a 2D image k is 0 (or absent).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from nibabel.spatialimages import SpatialImage
from PIL import Image

from monaiseg.label.runtime import RequestError
from monaiseg.prompts import ObjectPrompt, ijk_box_to_xy, ijk_point_to_xy


@dataclass
class SlicePrompt:
    """Prompts of one object on one slice, IJK: points [(i, j)], labels (1 fg, 0 bg), box (i0, j0, i1, j1)."""

    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None


@dataclass
class RequestObject:
    """One object of a request: its label value and name, its prompts per slice k and the slice
    range (k0, k1) of a lone 3D roi with k0 < k1 (None: not given)."""

    value: int
    name: str
    slices: dict[int, SlicePrompt] = field(default_factory=dict)
    frame_range: tuple[int, int] | None = None


def image_shape(path: str | Path) -> tuple[int, ...]:
    """Spatial shape of an image as MONAI loads it ((I, J) for 2D, (I, J, K) for 3D), from its
    header; RequestError (400) naming the file when it cannot be read."""
    path = Path(path)
    name = path.name.lower()
    try:
        if name.endswith((".nii", ".nii.gz")):
            nii = nib.load(str(path))
            if not isinstance(nii, SpatialImage):
                raise TypeError(f"a {type(nii).__name__}, not a volume")
            shape = tuple(int(s) for s in nii.shape)
            return shape[:3] if len(shape) > 3 and all(s == 1 for s in shape[3:]) else shape
        if name.endswith((".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")):
            with Image.open(path) as img:
                img.verify()
            with Image.open(path) as img:
                return tuple(img.size)  # (width, height) = (I, J)
        from monai.transforms import LoadImage

        return tuple(LoadImage(image_only=True, ensure_channel_first=True)(str(path)).shape[1:])
    except Exception as exc:  # any reader error means the file is not an image we can read
        raise RequestError(f"image {path.name} cannot be read: {exc}") from None


def mask_prompt(path: str | Path, shape: Sequence[int], value: int, frame: int = 0) -> np.ndarray:
    """An uploaded label (MONAI Label's `label` file: the client's current segment) as a mask prompt
    for object `value`: (I, J) bool on slice `frame` of a volume (or the 2D image), the voxels equal
    to `value`, or every nonzero one when the file is binary. RequestError (400) when the file cannot
    be read, is shaped unlike the image, or holds no voxel of the object there."""
    from monai.transforms import LoadImage

    try:
        array = np.asarray(LoadImage(image_only=True)(str(path)))
    except Exception as exc:  # any reader error means the file is not a label we can read
        raise RequestError(f"mask prompt {Path(path).name} cannot be read: {exc}") from None
    while array.ndim > len(shape) and array.shape[-1] == 1:
        array = array[..., 0]
    if tuple(array.shape) != tuple(shape):
        raise RequestError(f"mask prompt shape {tuple(array.shape)} differs from the image's {tuple(shape)}")
    if len(shape) == 3:
        if not 0 <= frame < shape[2]:
            raise RequestError(f"slice {frame} is outside the image of shape {tuple(shape)} (axis k)")
        array = array[..., frame]
    binary = set(np.unique(array).tolist()) <= {0, 1}
    mask = array > 0 if binary else array == value
    if not mask.any():
        raise RequestError(f"mask prompt for label {value} is empty on slice {frame}")
    return mask


def label_value(label, labels: Mapping[str, int], strict: bool) -> tuple[int, str]:
    """(value, name) of a request's "label": a name of `labels`, a value 1..255, or nothing (the
    first label); another name is refused when `strict`, else taken as the first label."""
    names = {v: k for k, v in labels.items()}
    if label is None or label == "":
        value = min(labels.values())
        return value, names[value]
    if isinstance(label, (int, float)) or (isinstance(label, str) and label.isdigit()):
        value = int(label)
        if not 1 <= value <= 255:
            raise RequestError(f"label value {value} must be in 1..255")
        return value, names.get(value, str(value))
    if label in labels:
        return labels[label], label
    if strict:
        raise RequestError(f"unknown label {label!r}; this model's labels are {sorted(labels)}")
    value = min(labels.values())  # a client's own segment name (e.g. "Segment_1")
    return value, names[value]


def _points(raw, key: str, slice_idx, ndim: int) -> list[tuple[int, float, float]]:
    out = []
    for p in raw or []:
        if not isinstance(p, (list, tuple)) or len(p) not in (2, 3):
            raise RequestError(f"{key} point {p!r} must be [i, j] or [i, j, k]")
        k = p[2] if len(p) == 3 else slice_idx
        if k is None:
            if ndim == 3:
                raise RequestError(f"{key} point {list(p)} on a volume needs k ([i, j, k]) or a 'slice'")
            k = 0
        out.append((int(k), float(p[0]), float(p[1])))
    return out


def parse_objects(params: Mapping, shape: Sequence[int], labels: Mapping[str, int]) -> list[RequestObject]:
    """Objects of a request (see module docstring) for an image of spatial `shape`; every point
    and box is checked to lie in the image. RequestError when there is no prompt or one is outside."""
    ndim = len(shape)
    entries = params.get("objects")
    strict = entries is not None
    if entries is None:
        entries = [{k: params.get(k) for k in ("label", "foreground", "background", "roi", "slice")}]
    if not isinstance(entries, list) or not entries:
        raise RequestError("'objects' must be a non-empty list")
    objects: dict[int, RequestObject] = {}
    for entry in entries:
        value, name = label_value(entry.get("label"), labels, strict)
        obj = RequestObject(value, name)
        slice_idx = entry.get("slice")
        slice_idx = None if slice_idx is None or int(slice_idx) < 0 else int(slice_idx)
        for key, flag in (("foreground", 1), ("background", 0)):
            for k, i, j in _points(entry.get(key), key, slice_idx, ndim):
                _check(f"{key} point {[i, j, k][:ndim]}", (i, j, k), shape)
                prompt = obj.slices.setdefault(k, SlicePrompt())
                prompt.points.append((i, j))
                prompt.labels.append(flag)
        roi = entry.get("roi")
        if roi:
            if len(roi) not in (4, 6):
                raise RequestError(f"roi {roi!r} must be [i0, j0, i1, j1] or [i0, j0, i1, j1, k0, k1]")
            i0, j0, i1, j1 = (float(v) for v in roi[:4])
            if len(roi) == 6:
                k0, k1 = int(roi[4]), int(roi[5])
                if k0 > k1:
                    raise RequestError(f"roi {roi!r} has k0 > k1")
                k = (k0 + k1) // 2
                for end in (k0, k1):
                    _check(f"roi {list(roi)}", (i0, j0, end), shape)
                obj.frame_range = (k0, k1) if k0 < k1 else None
            elif slice_idx is not None or ndim == 2:
                k = slice_idx or 0
            else:
                raise RequestError(f"roi {roi!r} on a volume needs k0, k1 or a 'slice'")
            if not (i0 <= i1 and j0 <= j1):
                raise RequestError(f"roi {roi!r} is not [i0, j0, i1, j1(, k0, k1)] with i0 <= i1, j0 <= j1")
            _check(f"roi {list(roi)}", (i0, j0, k), shape)
            _check(f"roi {list(roi)}", (i1, j1, k), shape)
            obj.slices.setdefault(k, SlicePrompt()).box = (i0, j0, i1, j1)
        merged = objects.setdefault(value, RequestObject(value, name))
        clash = sorted(set(obj.slices) & set(merged.slices))
        if clash:
            raise RequestError(f"label {name!r} is given twice on slice {clash[0]}")
        merged.slices.update(obj.slices)
        merged.frame_range = merged.frame_range or obj.frame_range
    objects = {v: o for v, o in objects.items() if o.slices}
    for o in objects.values():
        o.frame_range = o.frame_range if len(o.slices) == 1 else None  # a range bounds a lone 3D box only
    if not objects:
        raise RequestError("no prompt: give foreground / background points or an roi")
    return list(objects.values())


def _check(what: str, ijk: Sequence[float], shape: Sequence[int]) -> None:
    for axis, (c, size) in enumerate(zip(ijk, shape)):
        if not 0 <= c <= size - 1:
            raise RequestError(f"{what} is outside the image of shape {tuple(shape)} (axis {'ijk'[axis]})")
    if len(shape) == 2 and ijk[2] != 0:
        raise RequestError(f"{what}: slice {ijk[2]} given for a 2D image")


def object_prompts(objects: Sequence[RequestObject]) -> list[ObjectPrompt]:
    """`ObjectPrompt`s (one per object and prompted slice) in the (x, y) of slice [..., k] of the
    loaded array (`ijk_to_xy`), as `propagate_volume` and `box_carry_volume` take them."""
    prompts = []
    for obj in objects:
        for k, p in sorted(obj.slices.items()):
            prompts.append(
                ObjectPrompt(
                    obj_id=obj.value,
                    frame=k,
                    box=ijk_box_to_xy(p.box) if p.box is not None else None,
                    points=tuple(ijk_point_to_xy(q) for q in p.points) or None,
                    point_labels=tuple(p.labels) or None,
                    frame_range=obj.frame_range,
                )
            )
    return prompts


def viewer_objects_json(objects: Sequence[RequestObject], masks: Mapping[int, np.ndarray] | None = None) -> str:
    """The objects as `read_object_prompts` returns them (pixels of a 2D image, x = i, y = j), JSON
    (`ObjectPromptInferer`'s input); `masks`: {label value: (I, J) mask prompt}, given as rows (j)."""
    items = []
    for obj in objects:
        p = obj.slices[0]
        item = {
            "label": obj.value,
            "box": list(p.box) if p.box is not None else None,
            "points": [list(q) for q in p.points] or None,
            "point_labels": list(p.labels) or None,
        }
        if masks and obj.value in masks:
            item["mask"] = np.asarray(masks[obj.value], dtype=np.uint8).T.tolist()
        items.append(item)
    return json.dumps(items)


def box_rows(objects: Sequence[RequestObject]) -> torch.Tensor:
    """One box per object (K, 4) in the loaded array's (x, y) (`InstancePromptInferer`'s boxes)."""
    rows = []
    for obj in objects:
        box = obj.slices[0].box
        if box is None:
            raise RequestError(f"object {obj.name!r}: one roi (box) per object, not points")
        rows.append(ijk_box_to_xy(box))
    return torch.as_tensor(np.asarray(rows, dtype=np.float32).reshape(-1, 4))
