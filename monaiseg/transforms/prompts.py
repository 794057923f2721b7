"""Prompts from labels and from user files.

Conventions: 2D tensors are (C, H, W) with rows along H; SAM coordinates are pixels
(x = column, y = row). In volumes (C, I, J, K) a slice is [..., k] and user prompts are voxel
indices (i, j) as 3D Slicer reports them, so a box [i0, j0, i1, j1] is (x0, y0, x1, y1) =
(j0, i0, j1, i1) for the model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

from monaiseg.prompts import (
    ObjectPrompt,
    check_box,
    ijk_box_to_xy,
    ijk_to_xy,
    key_slice,
    mask_box,
    read_object_prompts,
    read_prompt_file,
)
from monaiseg.utils.batch import source_name


class RandBoxPromptd(Randomizable, MapTransform):
    """Pick one object of a 2D label (1, H, W), make the label its binary mask, add its box.
    For a clip label (1, H, W, T) the box is taken on frame 0 (the prompted frame).

    The box (x0, y0, x1, y1) is jittered per side by up to `jitter` pixels at
    `reference_size` (MedSAM upstream: 0-5 px at 256), scaled to the label size, then clipped.
    `labels`: object values to choose from (default: any value > 0).
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        box_key: str = "box",
        jitter: float = 5.0,
        reference_size: int = 256,
        labels: Sequence[int] | None = None,
    ):
        MapTransform.__init__(self, keys)
        self.box_key, self.jitter, self.reference_size = box_key, jitter, reference_size
        self.labels = None if labels is None else {int(v) for v in labels}

    def randomize(self, data=None) -> None:
        pass

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        key = self.first_key(d)
        label = d[key]
        values = [
            int(v)
            for v in torch.unique(torch.as_tensor(label))
            if v > 0 and (self.labels is None or int(v) in self.labels)
        ]
        if not values:
            raise ValueError(f"{source_name(d, key)}: the sampled slice has no object to prompt (empty label)")
        value = values[self.R.randint(len(values))]
        mask = torch.as_tensor(label) == value
        first = mask[0] if mask.ndim == 3 else mask[0, ..., 0]
        if not first.any():
            raise ValueError(f"{source_name(d, key)}: the object is absent from the clip's first frame")
        x0, y0, x1, y1 = mask_box(first.cpu().numpy())
        height, width = first.shape
        scale = max(height, width) / self.reference_size
        shift = self.R.uniform(-self.jitter, self.jitter, size=4) * scale
        box = np.array([x0, y0, x1, y1], dtype=np.float32) + shift.astype(np.float32)
        box[[0, 2]] = np.clip(np.sort(box[[0, 2]]), 0, width - 1)
        box[[1, 3]] = np.clip(np.sort(box[[1, 3]]), 0, height - 1)
        d[key] = mask.to(torch.float32)
        d[self.box_key] = torch.as_tensor(box)
        return d


class InstanceBoxesd(MapTransform):
    """Boxes of every object of a 2D instance map (1, H, W) -> `box_key` (K, 4) float32, objects in
    increasing id order (instance evaluation: one box prompt per cell). An empty map gives (0, 4)."""

    def __init__(self, keys: KeysCollection = "label", box_key: str = "boxes"):
        super().__init__(keys)
        self.box_key = box_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        key = self.first_key(d)
        label = np.asarray(torch.as_tensor(d[key]).cpu())
        if label.ndim != 3 or label.shape[0] != 1:
            raise ValueError(f"{source_name(d, key)}: instance boxes need a (1, H, W) label, got shape {label.shape}")
        ids = [v for v in np.unique(label[0]) if v > 0]
        boxes = [mask_box(label[0] == v) for v in ids]
        d[self.box_key] = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        return d


class LoadBoxesd(MapTransform):
    """Read a JSON box file (pixels of the 2D image as a viewer shows it: x = column, y = row) into
    `keys`, in the coordinates of the loaded array (MONAI loads PNG/BMP x first, (C, X, Y), so x
    and y swap; see `ijk_to_xy`). Two layouts:
    - a list of boxes `[[x0, y0, x1, y1], ...]` -> (K, 4) float32;
    - the prompt sidecar `{"objects": [{"label": v, "box": [x0, y0, x1, y1]}, ...]}`
      (`read_object_prompts`; boxes only) -> a list of `ObjectPrompt` on slice 0, one instance per
      object, numbered 1, 2, ... in file order, and under `labels_key` the JSON list of the instances'
      labels (several objects may share a label; `InstanceLabelsd` maps the instances back).
    Boxes follow `monaiseg.prompts.check_box` (inclusive pixels; a 1-pixel-thin box is valid); a reversed
    box or one outside the image raises one error naming the file. A missing key and prompt lists pass
    through."""

    def __init__(self, keys: KeysCollection = "boxes", image_key: str = "image", labels_key: str = "object_labels"):
        super().__init__(keys, allow_missing_keys=True)
        self.image_key, self.labels_key = image_key, labels_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            path = d[key]
            if not isinstance(path, (str, Path)):
                continue
            size_x, size_y = d[self.image_key].shape[1:3]
            try:
                content = json.loads(Path(path).read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"{path}: not a readable JSON box file ({exc})") from exc
            if isinstance(content, dict):
                d[key], labels = self._objects(path, size_x, size_y)
                d[self.labels_key] = json.dumps(labels)
                continue
            try:
                boxes = np.asarray(content, dtype=np.float32).reshape(-1, 4)
            except ValueError as exc:
                raise ValueError(f"{path}: not a JSON list of [x0, y0, x1, y1] boxes ({exc})") from exc
            for box in boxes:
                try:
                    check_box(box, size_x, size_y)
                except ValueError as exc:
                    raise ValueError(f"{path}: {exc}") from None
            d[key] = torch.as_tensor(np.asarray([ijk_to_xy(b) for b in boxes], dtype=np.float32).reshape(-1, 4))
        return d

    def _objects(self, path, size_x: int, size_y: int) -> tuple[list[ObjectPrompt], list[int]]:
        prompts, labels = [], []
        for n, obj in enumerate(read_object_prompts(path, width=size_x, height=size_y)):
            if obj["box"] is None or obj["points"] is not None:
                raise ValueError(f"{path}, object #{n}: give a 'box' only (this model is box-prompted)")
            prompts.append(ObjectPrompt(obj_id=n + 1, frame=0, box=ijk_box_to_xy(obj["box"])))
            labels.append(obj["label"])
        return prompts, labels


class InstanceLabelsd(MapTransform):
    """An instance map under `keys` (each object its instance number 1..N, 0 elsewhere; `LoadBoxesd`'s
    numbering) -> the label map (each instance its label from the JSON list under `labels_key`), the
    instance map kept under `instances_key`. Without `labels_key` (instances are labels) the map is copied."""

    def __init__(
        self, keys: KeysCollection = "pred", labels_key: str = "object_labels", instances_key: str = "instances"
    ):
        super().__init__(keys)
        self.labels_key, self.instances_key = labels_key, instances_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            instances = d[key]
            d[self.instances_key] = instances.clone()
            if self.labels_key not in d:
                continue
            labels = json.loads(d[self.labels_key])
            lookup = torch.as_tensor([0, *labels], dtype=instances.dtype, device=instances.device)
            d[key] = lookup[torch.as_tensor(instances).long()].to(instances.dtype)
            if hasattr(instances, "meta"):
                d[key] = type(instances)(d[key], meta=instances.meta)
        return d


class ReadObjectPromptsd(MapTransform):
    """The prompt sidecar under `keys` (a path) read against the image under `image_key` (loaded x first,
    (C, X, Y)) into `prompts_key`: the JSON of its checked objects (`read_object_prompts`), the form
    `monaiseg.prompts.prompted_items` gives. Read per case, so a bad file fails its case only."""

    def __init__(self, keys: KeysCollection = "prompt_file", prompts_key: str = "prompts", image_key: str = "image"):
        super().__init__(keys, allow_missing_keys=True)
        self.prompts_key, self.image_key = prompts_key, image_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            width, height = d[self.image_key].shape[1:3]
            d[self.prompts_key] = json.dumps(read_object_prompts(d.pop(key), width=width, height=height))
        return d


class KeySlicePromptsd(MapTransform):
    """Prompts from a 3D label (1, I, J, K): per object, a box on its key slice (largest area).

    Writes a list of `ObjectPrompt` to `prompts_key`. `labels`: which objects (default: all
    values > 0 present); a requested label absent from the file raises unless `allow_missing`
    (evaluation: absent objects are simply not prompted). `first_frame=True` (tracking a video
    from its start): boxes on frame 0 for the objects present there, the others are not prompted.
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        prompts_key: str = "prompts",
        labels: Sequence[int] | None = None,
        allow_missing: bool = False,
        allow_missing_keys: bool = False,
        first_frame: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.prompts_key = prompts_key
        self.labels = None if labels is None else [int(v) for v in labels]
        self.allow_missing = allow_missing
        self.first_frame = first_frame

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        key = self.first_key(d)
        if key not in d:  # allow_missing_keys and no label given
            return d
        label = np.asarray(torch.as_tensor(d[key]).cpu())[0]
        if label.ndim != 3:
            raise ValueError(f"{source_name(d, key)}: key-slice prompts need a 3D label, got shape {label.shape}")
        present = sorted(int(v) for v in np.unique(label[..., 0] if self.first_frame else label) if v > 0)
        wanted = present if self.labels is None else self.labels
        missing = [v for v in wanted if v not in present]
        if missing and not self.allow_missing:
            raise ValueError(f"{source_name(d, key)}: requested object label(s) {missing} are empty in this label file")
        if not any(v in present for v in wanted):
            raise ValueError(f"{source_name(d, key)}: no object to prompt (labels {wanted} all empty)")
        prompts = []
        for value in wanted:
            if value in present:
                mask = label == value
                k = 0 if self.first_frame else key_slice(mask)
                prompts.append(ObjectPrompt(obj_id=value, frame=k, box=mask_box(mask[..., k])))
        d[self.prompts_key] = prompts
        return d


class LoadPromptsd(MapTransform):
    """Replace the prompt-file path under `keys` by its `ObjectPrompt` list, checked against `image_key`
    (values that are already prompt lists, e.g. from `KeySlicePromptsd`, are left as they are;
    boxes: `monaiseg.prompts.check_box`)."""

    def __init__(self, keys: KeysCollection = "prompts", image_key: str = "image", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        shape = tuple(d[self.image_key].shape[1:])
        for key in self.key_iterator(d):
            if not isinstance(d[key], list):
                d[key] = read_prompt_file(d[key], shape)
        return d


class RequirePromptsd(MapTransform):
    """Raise one clear error naming the image when no prompts were given for it."""

    def __init__(self, keys: KeysCollection = "prompts", image_key: str = "image"):
        super().__init__(keys, allow_missing_keys=True)
        self.image_key = image_key

    def __call__(self, data: Mapping) -> dict:
        for key in self.keys:
            if not isinstance(data.get(key), list) or not data[key]:
                raise ValueError(
                    f"{source_name(data, self.image_key)}: no prompts; give a JSON prompt file ('prompts') "
                    "or a label file to take key-slice boxes from ('prompt_label')"
                )
        return dict(data)


class RandClipd(Randomizable, MapTransform):
    """Sample a clip of `clip_length` consecutive slices (last axis) from (C, I, J, K) volumes that
    starts on a slice holding a random object, running forward, or backward when the object sits
    too close to the end. The label keeps only that object. Output (C, I, J, T).
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        label_key: str = "label",
        clip_length: int = 8,
        labels: Sequence[int] | None = None,
    ):
        MapTransform.__init__(self, keys)
        self.label_key, self.clip_length = label_key, clip_length
        self.labels = None if labels is None else {int(v) for v in labels}

    def randomize(self, data=None) -> None:
        pass

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        label = torch.as_tensor(d[self.label_key])
        depth = label.shape[-1]
        if depth < self.clip_length:
            raise ValueError(
                f"{source_name(d, self.label_key)}: {depth} slices, fewer than the clip length {self.clip_length}"
            )
        values = [int(v) for v in torch.unique(label) if v > 0 and (self.labels is None or int(v) in self.labels)]
        if not values:
            raise ValueError(f"{source_name(d, self.label_key)}: no object to sample a clip from (empty label)")
        value = values[self.R.randint(len(values))]
        slices = torch.nonzero((label == value).reshape(-1, depth).any(0)).flatten().tolist()
        starts = [k for k in slices if k + self.clip_length <= depth or k - self.clip_length + 1 >= 0]
        if not starts:
            raise ValueError(
                f"{source_name(d, self.label_key)}: object {value} has no slice"
                f" a {self.clip_length}-slice clip can start from"
            )
        start = starts[self.R.randint(len(starts))]
        step = 1 if start + self.clip_length <= depth else -1
        index = list(range(start, start + step * self.clip_length, step))
        for key in self.key_iterator(d):
            d[key] = d[key][..., index]
        d[self.label_key] = torch.where(d[self.label_key] == value, d[self.label_key], 0)
        return d
