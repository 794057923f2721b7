"""Bidirectional SAM2 propagation through a volume (or video) held in memory.

A volume is segmented as a video, as in MedSAM2: prompts on key slices, then sam2's own
memory tracking forward and backward from them (a fresh tracking state per direction, as
MedSAM2 does). Unlike sam2's `init_state` (JPEG folder or MP4, all frames decoded and kept),
frames are produced lazily from the input tensor, and per-frame tracking outputs that sam2
can no longer use (older than its memory window) are dropped as tracking moves on, so memory
does not grow with the number of slices beyond the label volume itself.

The forward pass runs from the first prompted frame to the end, the backward pass from the last
prompted frame to the start. Each frame of each object takes its mask from the direction whose
nearest prompted frame is closer (ties: forward). Within a frame, overlapping objects go to the
highest logit. Image features of prompted frames are computed once for both passes.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import json

import numpy as np
import torch


@dataclass(frozen=True)
class ObjectPrompt:
    """A prompt for object `obj_id` (its label value, > 0) on frame `frame`.

    Coordinates are pixels of the frame (x = column, y = row): `box` (x0, y0, x1, y1);
    `points` ((x, y), ...) with `point_labels` (1 foreground, 0 background); or `mask` (H, W).
    """

    obj_id: int
    frame: int
    box: tuple[float, float, float, float] | None = None
    points: tuple[tuple[float, float], ...] | None = None
    point_labels: tuple[int, ...] | None = None
    mask: np.ndarray | None = field(default=None, compare=False)

    def validate(self, num_frames: int, height: int, width: int) -> None:
        """Raise ValueError when the prompt lies outside a (num_frames, height, width) volume."""
        if self.obj_id <= 0:
            raise ValueError(f"object id must be a positive label value, got {self.obj_id}")
        if not 0 <= self.frame < num_frames:
            raise ValueError(f"object {self.obj_id}: key slice {self.frame} is outside the volume (0..{num_frames - 1})")
        if self.box is None and self.points is None and self.mask is None:
            raise ValueError(f"object {self.obj_id}: a prompt needs a box, points or a mask")
        if self.mask is not None:
            if self.box is not None or self.points is not None:
                raise ValueError(f"object {self.obj_id}: give either a mask or box/points on frame {self.frame}")
            if tuple(np.shape(self.mask)) != (height, width):
                raise ValueError(f"object {self.obj_id}: mask shape {np.shape(self.mask)} != slice shape {(height, width)}")
            if not np.any(self.mask):
                raise ValueError(f"object {self.obj_id}: mask prompt on slice {self.frame} is empty")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not (0 <= x0 <= x1 < width and 0 <= y0 <= y1 < height):
                raise ValueError(
                    f"object {self.obj_id}: box {tuple(self.box)} is outside the {width}x{height} (x, y) slice or not (x0, y0, x1, y1)"
                )
        if self.points is not None:
            if self.point_labels is None or len(self.point_labels) != len(self.points) or not self.points:
                raise ValueError(f"object {self.obj_id}: points need one label (1 fg, 0 bg) each")
            for x, y in self.points:
                if not (0 <= x < width and 0 <= y < height):
                    raise ValueError(f"object {self.obj_id}: point {(x, y)} is outside the {width}x{height} (x, y) slice")


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
        for key in ("box", "point_labels"):
            if key in item:
                item[key] = tuple(item[key])
        if "points" in item:
            item["points"] = tuple(tuple(p) for p in item["points"])
        if "mask" in item:
            item["mask"] = np.asarray(item["mask"], dtype=bool)
        prompts.append(ObjectPrompt(**item))
    return prompts


class LazyFrames(Sequence):
    """Frames of a (C, H, W, D) volume in [0, 1], made into SAM2 input (3, S, S) on access."""

    def __init__(self, volume: torch.Tensor, model):
        self.volume, self.model = volume, model

    def __len__(self) -> int:
        return self.volume.shape[-1]

    def __getitem__(self, index: int) -> torch.Tensor:
        frame = self.volume[..., index].unsqueeze(0).to(self.model.device, torch.float32)
        return self.model.normalize_images(frame)[0]


def _new_state(model, frames: LazyFrames, height: int, width: int, offload: bool) -> dict:
    """A sam2 video-predictor state (the dict `init_state` builds) over lazy in-memory frames."""
    device = model.device
    return {
        "images": frames,
        "num_frames": len(frames),
        "offload_video_to_cpu": offload,
        "offload_state_to_cpu": offload,
        "video_height": height,
        "video_width": width,
        "device": device,
        "storage_device": torch.device("cpu") if offload else device,
        "point_inputs_per_obj": {},
        "mask_inputs_per_obj": {},
        "cached_features": {},
        "constants": {},
        "obj_id_to_idx": OrderedDict(),
        "obj_idx_to_id": OrderedDict(),
        "obj_ids": [],
        "output_dict_per_obj": {},
        "temp_output_dict_per_obj": {},
        "frames_tracked_per_obj": {},
    }


def _add_prompt(model, state: dict, prompt: ObjectPrompt) -> None:
    if prompt.mask is not None:
        model.add_new_mask(state, prompt.frame, prompt.obj_id, torch.as_tensor(np.asarray(prompt.mask, dtype=bool)))
        return
    points = labels = None
    if prompt.points is not None:
        points = np.asarray(prompt.points, dtype=np.float32)
        labels = np.asarray(prompt.point_labels, dtype=np.int32)
    box = None if prompt.box is None else np.asarray(prompt.box, dtype=np.float32)
    model.add_new_points_or_box(
        state, prompt.frame, prompt.obj_id, points=points, labels=labels, box=box, normalize_coords=True
    )


def memory_window(model) -> int:
    """How many past frames sam2 reads when tracking a frame (mask memories and object pointers)."""
    return max(model.num_maskmem, model.max_obj_ptrs_in_encoder if model.use_obj_ptrs_in_encoder else 0)


def _drop_stale_outputs(state: dict, frame: int, reverse: bool, window: int) -> None:
    """Forget non-prompted frame outputs that tracking past `frame` can no longer read."""
    for per_obj in state["output_dict_per_obj"].values():
        stored = per_obj["non_cond_frame_outputs"]
        for t in [t for t in stored if (t - frame if reverse else frame - t) >= window]:
            del stored[t]


def _owns(keys: Sequence[int], frame: int, reverse: bool) -> bool:
    """Whether the pass in this direction gives the object's mask on `frame`: its nearest
    prompted frame behind `frame` is closer than the one ahead (ties go to the forward pass)."""
    forward = min((frame - k for k in keys if k <= frame), default=float("inf"))
    backward = min((k - frame for k in keys if k >= frame), default=float("inf"))
    return backward < forward if reverse else forward <= backward


@torch.inference_mode()
def propagate_volume(
    model,
    volume: torch.Tensor,
    prompts: Sequence[ObjectPrompt],
    offload_to_cpu: bool = True,
    stats: dict | None = None,
) -> torch.Tensor:
    """Segment a (C, H, W, D) volume in [0, 1] (C = 1 or 3) from `prompts`; returns (H, W, D) labels.

    `stats`, when given, receives `max_stored_frames`: the largest number of per-frame outputs
    held in the tracking state at once (bounded by the memory window, not by D).
    """
    if volume.ndim != 4 or volume.shape[0] not in (1, 3):
        raise ValueError(f"propagation expects a (C, H, W, D) volume with C = 1 or 3, got {tuple(volume.shape)}")
    if not prompts:
        raise ValueError("propagation needs at least one prompt")
    volume = volume.as_tensor() if hasattr(volume, "as_tensor") else volume  # MetaTensor: plain values
    height, width, depth = volume.shape[1:]
    for prompt in prompts:
        prompt.validate(depth, height, width)
    keys_per_obj: dict[int, list[int]] = {}
    for prompt in prompts:
        keys_per_obj.setdefault(prompt.obj_id, []).append(prompt.frame)
    max_id = max(keys_per_obj)
    labels = torch.zeros((height, width, depth), dtype=torch.uint8 if max_id < 256 else torch.int32)
    frames = LazyFrames(volume, model)
    window = memory_window(model)
    max_stored = 0
    key_features: dict = {}  # image features of the prompted frames, encoded once for both passes
    starts = {False: min(p.frame for p in prompts), True: max(p.frame for p in prompts)}
    for reverse in (False, True):
        state = _new_state(model, frames, height, width, offload_to_cpu)
        state["kept_features"], state["keep_frames"] = key_features, {p.frame for p in prompts}
        for prompt in prompts:
            _add_prompt(model, state, prompt)
        for frame, obj_ids, masks in model.propagate_in_video(state, start_frame_idx=starts[reverse], reverse=reverse):
            logits = masks[:, 0].float().cpu()  # (objects, H, W)
            # objects whose mask on this frame belongs to this direction
            own = [i for i, obj in enumerate(obj_ids) if _owns(keys_per_obj[obj], frame, reverse)]
            if own:
                best, winner = logits[own].max(dim=0)
                ids = torch.tensor([obj_ids[i] for i in own], dtype=labels.dtype)[winner]
                fg = best > 0
                if reverse:  # keep what the forward pass already gave other objects
                    fg &= labels[..., frame] == 0
                labels[..., frame][fg] = ids[fg]
            _drop_stale_outputs(state, frame, reverse, window)
            stored = sum(len(o["non_cond_frame_outputs"]) for o in state["output_dict_per_obj"].values())
            max_stored = max(max_stored, stored)
    if stats is not None:
        stats["max_stored_frames"] = max_stored
    return labels
