"""Prompts: the one home of the prompt types, their JSON form and the prompt files users give.

Conventions. SAM coordinates are pixels (x = column, y = row). A 2D image tensor is (C, H, W)
with rows along H. In volumes (C, I, J, K) a slice is [..., k] and user prompts are voxel indices
(i, j) as 3D Slicer reports them, so a box [i0, j0, i1, j1] is (x0, y0, x1, y1) = (j0, i0, j1, i1)
for the model (`ijk_to_xy`). A 2D prompt file for a PNG / JPEG / BMP image is in pixels as
viewers show the image (x = column, y = row).

Prompt file (JSON, 2D and 3D alike):
    {"objects": [{"label": 1, "box": [x0, y0, x1, y1]},
                 {"label": 2, "points": [[x, y], ...], "point_labels": [1, 0, ...]}, ...]}
with "slice": k per object in a volume (and voxel indices as above); "name" is optional; a box
object in a volume may add "slice_range": [k0, k1], the slices the object spans (a 3D box).

Boxes (`check_box`, the one box convention of the package): [x0, y0, x1, y1] in inclusive pixel
coordinates, as the LiteMedSAM challenge's `.npz` boxes and `mask_box` give them: the box covers columns
x0..x1 and rows y0..y1, both ends included, so it is (x1 - x0 + 1) x (y1 - y0 + 1) pixels and a 1-pixel-thin
box [237, 199, 254, 199] (18 x 1 px) is valid. A box is refused only when it is reversed (x1 < x0 or
y1 < y0) or outside the image (a coordinate below 0 or beyond width - 1 / height - 1).

Several objects of a prompt file may share a label (one class, several instances: a lesion in two pieces);
each object is its own instance, numbered 1, 2, ... in file order (`object_labels`).

`ObjectPrompt` is what transforms, inferers and the MONAI Label app exchange; `prompts_to_json` /
`prompts_from_json` carry a list of them through MONAI's batch collation as one string.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class ObjectPrompt:
    """A prompt for object `obj_id` (its label value, > 0) on frame `frame`.

    Coordinates are pixels of the frame (x = column, y = row): `box` (x0, y0, x1, y1);
    `points` ((x, y), ...) with `point_labels` (1 foreground, 0 background); or `mask` (H, W).
    `frame_range` (first, last): the frames the object spans, when known (a 3D box; box carry
    then covers exactly these frames, see `monaiseg.inferers.box_carry`).
    """

    obj_id: int
    frame: int
    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], ...] | None = None
    point_labels: tuple[int, ...] | None = None
    mask: np.ndarray | None = field(default=None, compare=False)
    frame_range: tuple[int, int] | None = None

    def validate(self, num_frames: int, height: int, width: int) -> None:
        """Raise ValueError when the prompt lies outside a (num_frames, height, width) volume or its box is
        reversed (`check_box`)."""
        if self.obj_id <= 0:
            raise ValueError(f"object id must be a positive label value, got {self.obj_id}")
        if not 0 <= self.frame < num_frames:
            raise ValueError(
                f"object {self.obj_id}: key slice {self.frame} is outside the volume (0..{num_frames - 1})"
            )
        if self.frame_range is not None:
            first, last = self.frame_range
            if not 0 <= first <= self.frame <= last < num_frames:
                raise ValueError(
                    f"object {self.obj_id}: slice range {tuple(self.frame_range)} is outside the volume "
                    f"(0..{num_frames - 1}) or does not hold the key slice {self.frame}"
                )
        if self.box is None and self.points is None and self.mask is None:
            raise ValueError(f"object {self.obj_id}: a prompt needs a box, points or a mask")
        if self.mask is not None:
            if self.box is not None or self.points is not None:
                raise ValueError(f"object {self.obj_id}: give either a mask or box/points on frame {self.frame}")
            if tuple(np.shape(self.mask)) != (height, width):
                raise ValueError(
                    f"object {self.obj_id}: mask shape {np.shape(self.mask)} != slice shape {(height, width)}"
                )
            if not np.any(self.mask):
                raise ValueError(f"object {self.obj_id}: mask prompt on slice {self.frame} is empty")
        if self.box is not None:
            try:
                check_box(self.box, width, height)
            except ValueError as exc:
                raise ValueError(f"object {self.obj_id}: {exc}") from None
        if self.points is not None:
            if self.point_labels is None or len(self.point_labels) != len(self.points) or not self.points:
                raise ValueError(f"object {self.obj_id}: points need one label (1 fg, 0 bg) each")
            for x, y in self.points:
                if not (0 <= x < width and 0 <= y < height):
                    raise ValueError(
                        f"object {self.obj_id}: point {(x, y)} is outside the {width}x{height} (x, y) slice"
                    )


def check_box(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    """The box convention (module docstring): `box` [x0, y0, x1, y1], inclusive pixel coordinates of a
    `width` x `height` image, as floats; ValueError when it is not 4 numbers, reversed or outside the image.
    A box of one row or one column (x0 = x1 or y0 = y1) is valid."""
    values = [float(v) for v in box]
    if len(values) != 4:
        raise ValueError(f"box {list(box)} is not [x0, y0, x1, y1]")
    x0, y0, x1, y1 = values
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box {values} is reversed: give [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1")
    if min(x0, y0) < 0 or x1 > width - 1 or y1 > height - 1:
        raise ValueError(
            f"box {values} is outside the {width}x{height} image (x in 0..{width - 1}, y in 0..{height - 1},"
            " inclusive pixel coordinates)"
        )
    return x0, y0, x1, y1


def box_size(box: Sequence[float]) -> tuple[float, float]:
    """(width, height) in pixels of an inclusive box [x0, y0, x1, y1]: (x1 - x0 + 1, y1 - y0 + 1)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return x1 - x0 + 1, y1 - y0 + 1


def prompts_to_json(prompts: Sequence[ObjectPrompt]) -> str:
    """Serialise prompts (a JSON string survives MONAI batch collation and de-collation)."""
    items = []
    for p in prompts:
        item = {k: v for k, v in vars(p).items() if v is not None}
        if p.mask is not None:
            item["mask"] = np.asarray(p.mask, dtype=np.uint8).tolist()
        items.append(item)
    return json.dumps(items, default=lambda value: value.item())  # numpy scalars


def prompts_from_json(text: str) -> list[ObjectPrompt]:
    """Inverse of `prompts_to_json`."""
    prompts = []
    for item in json.loads(text):
        for key in ("box", "point_labels", "frame_range"):
            if key in item:
                item[key] = tuple(item[key])
        if "points" in item:
            item["points"] = tuple(tuple(p) for p in item["points"])
        if "mask" in item:
            item["mask"] = np.asarray(item["mask"], dtype=bool)
        prompts.append(ObjectPrompt(**item))
    return prompts


def batch_prompt_lists(prompts: Sequence[Sequence[ObjectPrompt] | str], batch_size: int) -> list[list[ObjectPrompt]]:
    """One prompt list per image of a batch of `batch_size`: lists as given, JSON strings (`prompts_to_json`, as
    they survive collation) decoded; ValueError when the number of lists is not the batch size."""
    if len(prompts) != batch_size:
        raise ValueError(f"got {len(prompts)} prompt lists for a batch of {batch_size} volumes")
    return [prompts_from_json(given) if isinstance(given, str) else list(given) for given in prompts]


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box (x0, y0, x1, y1) of a non-empty (H, W) mask, inclusive pixel indices."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError("cannot take the box of an empty mask")
    return int(cols.min()), int(rows.min()), int(cols.max()), int(rows.max())


def ijk_to_xy(box_or_point: Sequence[float]) -> tuple[float, ...]:
    """(i, j[, i1, j1]) voxel indices -> (x, y[, x1, y1]) SAM pixels of slice [..., k]."""
    v = [float(c) for c in box_or_point]
    return (v[1], v[0]) if len(v) == 2 else (v[1], v[0], v[3], v[2])


def ijk_box_to_xy(box: Sequence[float]) -> tuple[float, float, float, float]:
    """`ijk_to_xy` of a box (i0, j0, i1, j1) -> (x0, y0, x1, y1); ValueError for a point."""
    x0, y0, x1, y1 = ijk_to_xy(box)
    return x0, y0, x1, y1


def ijk_point_to_xy(point: Sequence[float]) -> tuple[float, float]:
    """`ijk_to_xy` of a point (i, j) -> (x, y); ValueError for a box."""
    x, y = ijk_to_xy(point)
    return x, y


def key_slice(mask: np.ndarray) -> int:
    """The slice k of an (I, J, K) mask with the largest area; ties: nearest the object's middle."""
    areas = mask.reshape(-1, mask.shape[-1]).sum(0)
    present = np.nonzero(areas)[0]
    middle = (present[0] + present[-1]) / 2
    best = np.nonzero(areas == areas.max())[0]
    return int(best[np.argmin(np.abs(best - middle))])


def read_prompt_file(path: str | Path, shape: Sequence[int]) -> list[ObjectPrompt]:
    """Prompts from a JSON sidecar for a volume of spatial `shape` (I, J, K).

    Format: {"objects": [{"label": 1, "slice": k, "box": [i0, j0, i1, j1]}
                         | {"label": 2, "slice": k, "points": [[i, j], ...], "point_labels": [1, 0]}]}
    (an optional "name" per object is ignored). A box object may give "slice_range": [k0, k1]
    (the object's slices, a 3D box); "slice" then defaults to the middle, int((k1 - k0) / 2 + k0).
    Boxes follow `check_box` (inclusive indices). Raises ValueError naming the file.
    """
    path = Path(path)
    try:
        objects = json.loads(path.read_text())["objects"]
        if not isinstance(objects, list):
            raise TypeError("'objects' is not a list")
    except FileNotFoundError:
        raise FileNotFoundError(f"prompt file {path} not found") from None
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"prompt file {path}: not a JSON object with an 'objects' list ({exc})") from None
    prompts = []
    for n, obj in enumerate(objects):
        try:
            span = obj.get("slice_range")
            if span is not None:
                first, last = (int(k) for k in span)
                span = (first, last)
            if "slice" in obj or "frame" in obj or span is None:
                frame = int(obj["slice"] if "slice" in obj else obj["frame"])
            else:
                frame = int((span[1] - span[0]) / 2 + span[0])
            prompt = ObjectPrompt(
                obj_id=int(obj["label"]),
                frame=frame,
                frame_range=span,
                box=ijk_box_to_xy(obj["box"]) if obj.get("box") is not None else None,
                points=tuple(ijk_point_to_xy(p) for p in obj["points"]) if obj.get("points") is not None else None,
                point_labels=tuple(int(v) for v in obj["point_labels"])
                if obj.get("point_labels") is not None
                else None,
            )
            prompt.validate(num_frames=shape[2], height=shape[0], width=shape[1])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"prompt file {path}, object #{n}: {exc}") from None
        prompts.append(prompt)
    if not prompts:
        raise ValueError(f"prompt file {path} lists no objects")
    return prompts


def read_object_prompts(path: str | Path, width: int, height: int) -> list[dict]:
    """Objects of a prompt sidecar for an image of `width` x `height` pixels, checked.

    Format: {"objects": [{"label": 1, "box": [x0, y0, x1, y1]},
                         {"label": 2, "points": [[x, y], ...], "point_labels": [1, 0, ...]}, ...]}
    pixels of the image as viewers show it (x = column, y = row, from 0; boxes: `check_box`); an object
    may give a box, points or both; point_labels (1 foreground, 0 background) default to all 1; "label"
    (1..255) is the object's value in the output label map, and several objects may share one (instances
    of one class); "name" is optional.
    Returns [{"label", "box" or None, "points" or None, "point_labels" or None}]. ValueError naming the file.
    """
    path = Path(path)
    try:
        objects = json.loads(path.read_text())["objects"]
        if not isinstance(objects, list) or not objects:
            raise ValueError("'objects' must be a non-empty list")
    except FileNotFoundError:
        raise FileNotFoundError(
            f"prompt file {path} not found (give --input_prompts or a <image name>.json sidecar)"
        ) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"prompt file {path}: not a JSON object with a non-empty 'objects' list ({exc})") from None
    checked = []
    for n, obj in enumerate(objects):
        try:
            value = int(obj["label"])
            if not 1 <= value <= 255:
                raise ValueError(f"label {value} must be in 1..255")
            box = obj.get("box")
            points, point_labels = obj.get("points"), obj.get("point_labels")
            if box is None and points is None:
                raise ValueError("give a 'box' and/or 'points'")
            if box is not None:
                box = list(check_box(box, width, height))
            if points is not None:
                points = [[float(x), float(y)] for x, y in points]
                point_labels = [1] * len(points) if point_labels is None else [int(v) for v in point_labels]
                if not points or len(point_labels) != len(points) or not set(point_labels) <= {0, 1}:
                    raise ValueError("'points' must be non-empty with one point_label (1 or 0) per point")
                outside = [p for p in points if not (0 <= p[0] <= width - 1 and 0 <= p[1] <= height - 1)]
                if outside:
                    raise ValueError(f"point(s) {outside} outside the {width}x{height} image")
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"prompt file {path}, object #{n}: {exc}") from None
        checked.append({"label": value, "box": box, "points": points, "point_labels": point_labels})
    return checked


def prompted_items(images: str | Sequence[str], prompts: str | Sequence[str] | None = None) -> list[dict]:
    """Inference items [{"image", "prompts": JSON of the checked objects}] for image paths and
    their prompt files (default: the sidecar `<image without extension>.json`). Every image
    header and prompt file is checked before anything runs, so a bad one stops the run with
    one error naming it and no outputs."""
    images = [images] if isinstance(images, (str, Path)) else list(images)
    if prompts is None:
        prompts = [str(Path(p).with_suffix(".json")) for p in images]
    prompts = [prompts] if isinstance(prompts, (str, Path)) else list(prompts)
    if len(prompts) != len(images):
        raise ValueError(f"{len(images)} images but {len(prompts)} prompt files")
    items = []
    for image, prompt in zip(images, prompts):
        try:
            with Image.open(image) as img:
                width, height = img.size
        except FileNotFoundError:
            raise FileNotFoundError(f"image {image} not found") from None
        except OSError as exc:
            raise ValueError(f"{image}: not a readable PNG / JPEG / BMP image ({exc})") from None
        items.append({"image": str(image), "prompts": json.dumps(read_object_prompts(prompt, width, height))})
    return items
