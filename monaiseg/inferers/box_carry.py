"""Box-prompted 2D segmentation of volumes slice by slice, the box carried from slice to slice
(MedSAM's and LiteMedSAM's 3D use; docs/methods.md#medsam).

Each object starts on its key slice k0 with a given box. Its mask there gives the box for slices
k0 + 1 and k0 - 1, their masks give the boxes for k0 + 2 and k0 - 2, and so on in both directions.
An object without a slice range ends where its mask vanishes (fewer than `min_area` pixels), where
the network's predicted IoU of a carried mask falls below `min_iou` (that mask is dropped; SAM's
own quality estimate, as the `pred_iou_thresh` of SAM's automatic mask generator: LiteMedSAM finds
some blob in any box, so its masks rarely vanish), or where the volume ends. An object with a slice
range (`ObjectPrompt.frame_range`, a 3D box) covers exactly its range, and a slice after an empty
mask is prompted with the key-slice box again (LiteMedSAM's 3D inference; no IoU rule).

An object may be prompted on several slices: a slice is carried from the nearer prompted slice
(the one below on a tie; `monaiseg.inferers.propagation.owns_frame`), so every carry ends where
another prompted slice of its object takes over. Objects are carried independently (each box comes
from the object's own mask) and composed per slice: where objects overlap, the higher logit wins
(`overlap="logit"`) or the object given later (`overlap="order"`: upstream LiteMedSAM writes its
objects one after the other).

Speed: each slice is encoded once for all objects (the objects' prompts are decoded one by one on
its features), and a network with `encode_images` / `predict_masks` (`SAMSegmenter`) encodes
`encode_batch` upcoming slices per encoder call: the slices where pending carries start and the
reach of the running ones (a carry without a slice range looks ahead no further than it came, as
its mask may vanish). Batched or not, the labels are the same. `encode_batch=None` (the default):
4 on a GPU, 1 on a CPU (on 2 shared cores a batch of 4 eager TinyViT slices took from 0.74x to 1.9x
the time per slice of one at a time, and the OpenVINO encoder lite_medsam runs on a CPU takes a
batch slice by slice). The features of slices the downward
sweep needs again are kept from the upward one. Upstream's 3D loop encodes every slice once per
object.

Corrections (`BoxCarry`, kept by a session): `correct(prompt)` replaces slice k's prompt of one
object (a box; clicks alone are added to the box that slice was segmented with) and reruns the
carry from k outward only, keeping other objects and slices out of its reach. Box carry is
deterministic, so once the box carried into a slice equals the box the slice was segmented with
before (same direction), every slice beyond is unchanged: the carry stops there (following the
stored results to where they end, and resuming if the carry now reaches further). `undo(obj_id)`
reverts the object's last correction exactly, `reset(obj_id)` drops the object.

Two ways to feed a slice to the network:
- whole slice (MedSAM, `letterbox=None`): the slice as it is (the network resizes it), boxes in
  slice pixels; the carried box is the previous mask's tight box grown by `box_margin` pixels;
- letterbox (LiteMedSAM, `letterbox=S`): `monaiseg.transforms.medsam.Letterbox` resizes the longest
  side to S (area), min-max scales and pads; key boxes are scaled as upstream (truncated), the
  carried box is the previous mask's box in the S x S input grown by 3 pixels (upstream's
  `get_bbox256`), and the S x S logits are cropped and resized back to the slice.

Conventions as in `monaiseg.transforms.prompts`: a volume is (C, H, W, D), slice k is [..., k]
with rows along H; a box is (x0, y0, x1, y1) with x along W (columns), inclusive pixel indices.
The network is any module called as `network(images (1, C, H, W), boxes=(K, 4)) -> logits
(K, M, H, W)` (`SAMSegmenter`); channel 0 is used and sigmoid > 0.5 is foreground. The IoU rule
needs `network.predict_masks(images, boxes=...) -> (logits, iou (K, M))` and is skipped without it.

`transpose=True` gives the network every slice with its two axes swapped (boxes swapped to match)
and swaps the labels back. MONAI reads NIfTI and PNG x first, while MedSAM was trained on arrays
read row first (SimpleITK, skimage), so this shows the network the slices as upstream does (the
letterbox then pads the rows and columns upstream pads).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from types import MethodType

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from monaiseg.inferers.embedding_reuse import EmbeddingReuse
from monaiseg.inferers.propagation import owns_frame
from monaiseg.inferers.volume_session import SessionError
from monaiseg.prompts import ObjectPrompt, mask_box, prompts_from_json
from monaiseg.transforms.medsam import Letterbox
from monaiseg.utils.batch import unwrap_model

Box = tuple[float, float, float, float]
OVERLAP_RULES = ("logit", "order")


def box_logits(
    network, images: torch.Tensor, boxes: torch.Tensor, transpose: bool = False, letterbox: int | None = None
) -> torch.Tensor:
    """Mask logits (K, 1, H, W) for images (B, C, H, W) and boxes (K, 4); K = B (one box per
    image) or B = 1 (K boxes on one image). `letterbox=S`: each image letterboxed to S x S
    (`Letterbox`), the boxes scaled with it, the logits brought back to (H, W). Differentiable in
    the network (training uses it)."""
    if isinstance(images, MetaTensor):
        images = images.as_tensor()
    boxes = torch.as_tensor(boxes, dtype=torch.float32, device=images.device).reshape(-1, 4)
    if transpose:
        images, boxes = images.transpose(-1, -2), boxes[:, [1, 0, 3, 2]]
    if letterbox is None:
        logits = network(images, boxes=boxes)[:, :1]
    else:
        frame = Letterbox(images.shape[-2], images.shape[-1], letterbox)
        rows = [boxes] if len(images) == 1 else boxes.split(1)
        logits = torch.cat(
            [
                letterbox_logits(network, image, [frame.box(b) for b in row.tolist()], frame)
                for image, row in zip(images, rows)
            ]
        )
    return logits.transpose(-1, -2) if transpose else logits


def letterbox_logits(network, image: torch.Tensor, boxes: Sequence[Sequence[float]], frame: Letterbox) -> torch.Tensor:
    """Logits (K, 1, H, W) of one slice (C, H, W) for K boxes already in the S x S input of `frame`."""
    return _letterbox_masks(network, image, boxes, frame)[0]


def _masks_and_iou(network, images: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Logits (K, 1, H, W) and the predicted IoU (K,) (None for a network without `predict_masks`)."""
    if hasattr(network, "predict_masks"):
        logits, iou = network.predict_masks(images, boxes=boxes)
        return logits[:, :1], iou[:, 0]
    return network(images, boxes=boxes)[:, :1], None


def _letterbox_masks(
    network, image: torch.Tensor, boxes: Sequence[Sequence[float]], frame: Letterbox
) -> tuple[torch.Tensor, torch.Tensor | None]:
    device = next(network.parameters(), torch.empty(0)).device
    inputs = frame.image(image)[None].to(device)
    boxes_s = torch.tensor(boxes, dtype=torch.float32, device=device).reshape(-1, 4)
    logits, iou = _masks_and_iou(network, inputs, boxes_s)
    return frame.restore(logits), iou


def grow_box(box: Sequence[float], margin: float, height: int, width: int) -> Box:
    """(x0, y0, x1, y1) grown by `margin` pixels on every side, clipped to a height x width slice."""
    x0, y0, x1, y1 = box
    return (max(x0 - margin, 0.0), max(y0 - margin, 0.0), min(x1 + margin, width - 1.0), min(y1 + margin, height - 1.0))


def _check_prompts(prompts: Sequence[ObjectPrompt], depth: int, height: int, width: int) -> None:
    """Box prompts, one per (object, slice), checked against the volume; an object with a slice
    range has one prompt."""
    if not prompts:
        raise ValueError("no box prompts to segment")
    seen: dict[int, list[ObjectPrompt]] = {}
    for prompt in prompts:
        prompt.validate(num_frames=depth, height=height, width=width)
        if prompt.box is None or prompt.points is not None or prompt.mask is not None:
            raise ValueError(
                f"object {prompt.obj_id}: box carry takes a box prompt only (MedSAM is box-prompted), "
                "got points or a mask"
            )
        given = seen.setdefault(prompt.obj_id, [])
        if any(p.frame == prompt.frame for p in given):
            raise ValueError(f"object {prompt.obj_id}: more than one box on slice {prompt.frame}")
        given.append(prompt)
        if len(given) > 1 and any(p.frame_range is not None for p in given):
            raise ValueError(f"object {prompt.obj_id}: a box with a slice range (3D box) is the object's only prompt")


def _box(prompt: ObjectPrompt, swap: bool) -> Box:
    """The prompt's box (x0, y0, x1, y1), its axes swapped for a transposed slice."""
    if prompt.box is None:
        raise ValueError(f"object {prompt.obj_id}: no box")
    x0, y0, x1, y1 = prompt.box
    return (y0, x0, y1, x1) if swap else (x0, y0, x1, y1)


class _WholeSlice:
    """MedSAM: the network sees the whole slice; boxes in slice pixels."""

    def __init__(self, network, height: int, width: int, box_margin: float, min_area: int):
        self.network, self.height, self.width = network, height, width
        self.box_margin, self.min_area = box_margin, min_area

    def key_box(self, box: Sequence[float]) -> Box:
        x0, y0, x1, y1 = box
        return x0, y0, x1, y1

    def point(self, x: float, y: float) -> tuple[float, float]:
        return float(x), float(y)

    def next_box(self, mask: np.ndarray, obj_id: int) -> Box | None:
        if int(mask.sum()) < self.min_area:
            return None
        return grow_box(mask_box(mask), self.box_margin, self.height, self.width)

    def input(self, image: torch.Tensor) -> torch.Tensor:
        """The network input (C, h, w) of one slice (C, H, W)."""
        return image

    def restore(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (K, M, h, w) of the network input back to the slice's (K, M, H, W)."""
        return logits

    def masks(self, image: torch.Tensor, boxes: Sequence[Box]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits (K, 1, H, W) and predicted IoU (K,) or None for one slice (C, H, W)."""
        return _masks_and_iou(self.network, image[None], torch.tensor(boxes, dtype=torch.float32, device=image.device))


class _Letterboxed(_WholeSlice):
    """LiteMedSAM: the network sees the letterboxed slice; boxes in the S x S input."""

    def __init__(self, network, height: int, width: int, size: int, min_area: int):
        super().__init__(network, height, width, 0.0, min_area)
        self.frame = Letterbox(height, width, size)

    def key_box(self, box: Sequence[float]) -> Box:
        return self.frame.box(box)

    def point(self, x: float, y: float) -> tuple[float, float]:
        return float(x) * self.frame.ratio, float(y) * self.frame.ratio

    def next_box(self, mask: np.ndarray, obj_id: int) -> Box | None:
        return None if int(mask.sum()) < self.min_area else self.frame.mask_box(mask, obj_id)

    def input(self, image: torch.Tensor) -> torch.Tensor:
        return self.frame.image(image)

    def restore(self, logits: torch.Tensor) -> torch.Tensor:
        return self.frame.restore(logits)

    def masks(self, image: torch.Tensor, boxes: Sequence[Box]) -> tuple[torch.Tensor, torch.Tensor | None]:
        return _letterbox_masks(self.network, image, boxes, self.frame)


class _Encoded:
    """A prompted network whose image encoder is replaced by one slice's features (`encode_images`'s
    output): its `predict_masks` (the model's own) runs the prompt encoder and the mask decoder only."""

    def __init__(self, network, features: tuple[torch.Tensor, list[torch.Tensor]]):
        self.network, self.features = network, features
        self.model = network.model if isinstance(network, EmbeddingReuse) else network

    def __getattr__(self, name: str):
        return getattr(self.network, name)

    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.features

    def predict_masks(self, images: torch.Tensor, **prompts) -> tuple[torch.Tensor, torch.Tensor]:
        return MethodType(type(self.model).predict_masks, self)(images, **prompts)


@dataclass(frozen=True)
class _Prompt:
    """An object's prompt on one slice in the network's frame: box and clicks (x, y) with labels."""

    box: Box | None
    points: tuple[tuple[float, float], ...] | None = None
    labels: tuple[int, ...] | None = None


@dataclass
class _Record:
    """An object's result on one slice: the chain direction and the prompt it was segmented with,
    whether its mask was kept (False: dropped by the IoU rule), the mask and its logits cropped to
    the mask's bounding box at (top, left) (None: empty), and the box it hands to the next slice."""

    reverse: bool
    prompted: bool
    prompt: _Prompt
    kept: bool
    next_box: Box | None
    top: int = 0
    left: int = 0
    mask: torch.Tensor | None = None
    logits: torch.Tensor | None = None

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.mask, self.logits) if t is not None)


@dataclass
class _Step:
    """What one correction replaced, to undo it: the slice's prompt before (None: none) and every
    record it overwrote or removed (None: was absent)."""

    obj_id: int
    frame: int
    prompt: _Prompt | None
    records: dict[int, _Record | None] = field(default_factory=dict)


@dataclass
class _Chain:
    """A carry in progress: object, the slice it is at, direction, the prompt for that slice, whether
    it is the slice's own prompt, and how many slices it carried so far."""

    obj: int
    at: int
    reverse: bool
    prompt: _Prompt
    prompted: bool
    count: int = 0


class _SliceFeatures:
    """Image features of the slices of a (C, H, W, D) volume (the network's view), encoded
    `batch` slices per encoder call and kept only while a later slice of the run may need them."""

    def __init__(self, network, volume: torch.Tensor, slices: _WholeSlice, batch: int | None):
        self.network, self.volume, self.slices = network, volume, slices
        self.kept: dict[int, tuple[torch.Tensor, list[torch.Tensor]]] = {}
        self.device = next(network.parameters(), torch.empty(0)).device
        self.batch = max(1, int(batch)) if batch is not None else 4 if self.device.type == "cuda" else 1

    def get(self, k: int, ahead: Sequence[int]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Features of slice k; on a miss, k and the `ahead` slices not held yet in one encoder call."""
        if k not in self.kept:
            frames = [k] + [a for a in ahead if a not in self.kept][: self.batch - 1]
            images = torch.stack([self.slices.input(self.volume[..., f]) for f in frames]).to(self.device)
            embeddings, high_res = self.network.encode_images(images)
            for n, f in enumerate(frames):
                self.kept[f] = (embeddings[n : n + 1], [level[n : n + 1] for level in high_res])
        return self.kept[k]

    def clear(self) -> None:
        self.kept = {}

    def masks(self, k: int, ahead: Sequence[int], prompt: _Prompt) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (1, 1, H, W) and predicted IoU (1,) of one object's prompt on slice k."""
        encoded = _Encoded(self.network, self.get(k, ahead))
        size = self._size()
        rows: dict[str, torch.Tensor] = {}
        if prompt.box is not None:
            rows["boxes"] = torch.tensor([prompt.box], dtype=torch.float32, device=self.device)
        if prompt.points:
            rows["points"] = torch.tensor([prompt.points], dtype=torch.float32, device=self.device)
            rows["point_labels"] = torch.tensor([prompt.labels], dtype=torch.int64, device=self.device)
        logits, iou = encoded.predict_masks(torch.empty((1, 1, *size), device=self.device), **rows)
        return self.slices.restore(logits[:, :1]), iou[:, 0]

    def _size(self) -> tuple[int, int]:
        if isinstance(self.slices, _Letterboxed):
            return self.slices.frame.size, self.slices.frame.size
        return self.slices.height, self.slices.width


class BoxCarry:
    """Box carry through one volume (C, H, W, D), kept for corrections; see the module docstring.

    `start(prompts)` -> labels (H, W, D) float32 (each object its `obj_id`, 0 elsewhere);
    `correct(prompt)`, `undo(obj_id)`, `reset(obj_id)` -> the slices whose result changed (the new
    labels in `labels`). Settings as `box_carry_volume`; `encode_batch`: slices per encoder call.
    """

    def __init__(
        self,
        network,
        volume: torch.Tensor,
        box_margin: float = 0.0,
        min_area: int = 1,
        transpose: bool = False,
        letterbox: int | None = None,
        overlap: str = "logit",
        min_iou: float | None = None,
        encode_batch: int | None = None,
    ):
        if overlap not in OVERLAP_RULES:
            raise ValueError(f"overlap must be one of {OVERLAP_RULES}, got {overlap!r}")
        if volume.ndim != 4:
            raise ValueError(f"box carry needs a volume (C, H, W, D), got shape {tuple(volume.shape)}")
        self.volume = volume.as_tensor() if isinstance(volume, MetaTensor) else volume
        self.shape = tuple(int(s) for s in self.volume.shape[-3:])  # (H, W, D) as given
        self.transpose, self.overlap, self.min_iou = transpose, overlap, min_iou
        view = self.volume.transpose(-3, -2) if transpose else self.volume  # the network's: rows along W
        self.height, self.width, self.depth = (int(s) for s in view.shape[-3:])
        self.slices = (
            _WholeSlice(network, self.height, self.width, box_margin, min_area)
            if letterbox is None
            else _Letterboxed(network, self.height, self.width, letterbox, min_area)
        )
        encodes = hasattr(network, "encode_images") and hasattr(network, "predict_masks")
        self.features = _SliceFeatures(network, view, self.slices, encode_batch) if encodes else None
        self.view = view
        self.prompts: dict[int, dict[int, _Prompt]] = {}  # object -> prompted slice -> prompt
        self.ranges: dict[int, tuple[int, int] | None] = {}
        self.range_box: dict[int, Box] = {}  # a 3D box's key-slice box: the restart after an empty slice
        self.records: dict[int, dict[int, _Record]] = {}
        self.history: dict[int, list[_Step]] = {}
        self.labels = torch.zeros(self.shape, dtype=torch.float32)

    @property
    def objects(self) -> list[int]:
        return sorted(self.prompts)

    # ------------------------------------------------------------------ interactions

    @torch.no_grad()
    def start(self, prompts: Sequence[ObjectPrompt]) -> torch.Tensor:
        """Carry every prompt's box through the volume; returns the labels (H, W, D)."""
        _check_prompts(prompts, self.shape[2], self.shape[0], self.shape[1])
        for p in prompts:
            box = self.slices.key_box(_box(p, self.transpose))
            self.prompts.setdefault(p.obj_id, {})[p.frame] = _Prompt(box)
            self.ranges[p.obj_id] = p.frame_range
            self.range_box[p.obj_id] = box
            self.records.setdefault(p.obj_id, {})
            self.history.setdefault(p.obj_id, [])
        self._run([(obj, k) for obj in self.prompts for k in self.prompts[obj]], None)
        self._compose(range(self.depth))
        return self.labels

    @torch.no_grad()
    def correct(self, prompt: ObjectPrompt) -> list[int]:
        """A box and / or clicks on slice k replace that slice's prompt of the object (clicks alone
        are added to the box the slice was segmented with); the carry reruns from k outward."""
        obj, k = prompt.obj_id, prompt.frame
        if obj not in self.prompts:
            raise SessionError(f"object {obj} is not in this session (it holds {self.objects})", 404)
        if not 0 <= k < self.depth:
            raise SessionError(f"slice {k} is outside the volume (0..{self.depth - 1})")
        if prompt.mask is not None:
            raise SessionError("box carry is corrected by a box or clicks, not a mask")
        span = self.ranges[obj]
        if span is not None and not span[0] <= k <= span[1]:
            raise SessionError(f"slice {k} is outside object {obj}'s slice range {span}")
        try:
            prompt.validate(self.shape[2], self.shape[0], self.shape[1])
        except ValueError as exc:
            raise SessionError(str(exc)) from None
        old = self.prompts[obj].get(k)
        step = _Step(obj, k, old)
        self.prompts[obj][k] = self._merge(obj, k, prompt)
        changed = self._run([(obj, k)], step)
        self.history[obj].append(step)
        self._compose(changed)
        return sorted(changed)

    def _merge(self, obj: int, k: int, prompt: ObjectPrompt) -> _Prompt:
        points = labels = None
        if prompt.points:
            swap = (lambda x, y: (y, x)) if self.transpose else (lambda x, y: (x, y))
            points = tuple(self.slices.point(*swap(x, y)) for x, y in prompt.points)
            labels = tuple(int(v) for v in prompt.point_labels or ())
        if prompt.box is not None:
            return _Prompt(self.slices.key_box(_box(prompt, self.transpose)), points, labels)
        old = self.prompts[obj].get(k)
        if old is None:  # clicks on a carried slice: with the box it was segmented with
            record = self.records[obj].get(k)
            return _Prompt(record.prompt.box if record is not None else None, points, labels)
        return _Prompt(old.box, (old.points or ()) + (points or ()), (old.labels or ()) + (labels or ()))

    @torch.no_grad()
    def undo(self, obj_id: int) -> list[int]:
        """Revert the object's last correction exactly; returns the slices recomposed."""
        if obj_id not in self.prompts:
            raise SessionError(f"object {obj_id} is not in this session (it holds {self.objects})", 404)
        if not self.history[obj_id]:
            raise SessionError(f"nothing to undo for object {obj_id}: it has no correction", 409)
        step = self.history[obj_id].pop()
        if step.prompt is None:
            del self.prompts[obj_id][step.frame]
        else:
            self.prompts[obj_id][step.frame] = step.prompt
        for k, record in step.records.items():
            if record is None:
                self.records[obj_id].pop(k, None)
            else:
                self.records[obj_id][k] = record
        self._compose(step.records)
        return sorted(step.records)

    @torch.no_grad()
    def reset(self, obj_id: int) -> list[int]:
        """Drop the object; returns the slices recomposed."""
        if obj_id not in self.prompts:
            raise SessionError(f"object {obj_id} is not in this session (it holds {self.objects})", 404)
        changed = sorted(self.records.pop(obj_id))
        del self.prompts[obj_id], self.ranges[obj_id], self.range_box[obj_id], self.history[obj_id]
        self._compose(changed)
        return changed

    def nbytes(self) -> int:
        """Bytes held: the volume, the labels and every object's stored masks."""
        records = sum(r.nbytes() for table in self.records.values() for r in table.values())
        return self.volume.nbytes + self.labels.nbytes + records

    # ------------------------------------------------------------------ the carry

    def _owns(self, obj: int, j: int, reverse: bool) -> bool:
        """Whether the carry of `obj` in this direction reaches slice j from the prompted slice behind
        it: inside the volume and the object's range, not prompted, nearer to that prompted slice
        than to the one ahead (`owns_frame`, ties going up)."""
        span = self.ranges[obj] or (0, self.depth - 1)
        keys = self.prompts[obj]
        return span[0] <= j <= span[1] and j not in keys and owns_frame(sorted(keys), j, reverse)

    def _reach(self, obj: int, j: int, reverse: bool) -> list[int]:
        """The slices from j on that the object's carry in this direction reaches (`_owns`)."""
        reach = []
        while 0 <= j < self.depth and self._owns(obj, j, reverse):
            reach.append(j)
            j += -1 if reverse else 1
        return reach

    def _set(self, obj: int, k: int, record: _Record | None, step: _Step | None) -> None:
        if step is not None:
            step.records.setdefault(k, self.records[obj].get(k))
        if record is None:
            self.records[obj].pop(k, None)
        else:
            self.records[obj][k] = record

    def _clear(self, obj: int, j: int, reverse: bool, step: _Step | None) -> set[int]:
        """Remove the object's records from slice j on, as far as its carry in this direction reaches."""
        cleared = {k for k in self._reach(obj, j, reverse) if k in self.records[obj]}
        for k in cleared:
            self._set(obj, k, None, step)
        return cleared

    def _run(self, starts: list[tuple[int, int]], step: _Step | None) -> set[int]:
        """Segment the prompted slices (object, k) of `starts` and carry each outward, up in one sweep
        over the slices, then down; returns the slices whose records changed."""
        changed: set[int] = set()
        keep = {j for obj, k in starts for j in self._reach(obj, k - 1, True)}  # the down sweep's slices
        up = [_Chain(obj, k, False, self.prompts[obj][k], True) for obj, k in starts]
        self._sweep(up, False, keep, step, changed)
        down = []
        for obj, k in starts:
            record = self.records[obj][k]
            if record.next_box is not None and self._owns(obj, k - 1, True):
                down.append(_Chain(obj, k - 1, True, _Prompt(record.next_box), False, 1))
            else:
                changed |= self._clear(obj, k - 1, True, step)
        self._sweep(down, True, set(), step, changed)
        if self.features is not None:
            self.features.clear()
        return changed

    def _sweep(self, chains: list[_Chain], reverse: bool, keep: set[int], step: _Step | None, changed: set[int]):
        """Run `chains` (each at its slice `at`) in one direction, the slices in order, the objects
        on one slice together. A carry ends at the end of its reach, where its mask vanishes or is
        dropped (the rest of its reach cleared), or where the box it brings equals the box the slice
        was segmented with before in this direction: box carry is deterministic, so the stored
        results from there on are what it would compute (followed to where they end)."""
        pending: dict[int, list[_Chain]] = {}
        for c in chains:
            pending.setdefault(c.at, []).append(c)
        order = range(self.depth - 1, -1, -1) if reverse else range(self.depth)
        sign = -1 if reverse else 1
        for j in order:
            live = [c for c in pending.pop(j, []) if not self._unchanged(c, j, pending, step, changed)]
            if not live:
                continue
            results = self._segment(j, live, self._ahead(j, reverse, live, pending))
            if self.features is not None and j not in keep:
                self.features.kept.pop(j, None)
            for c, (logits, iou) in zip(live, results):
                record = self._record(c, logits, iou)
                self._set(c.obj, j, record, step)
                changed.add(j)
                if record.next_box is not None and self._owns(c.obj, j + sign, reverse):
                    carried = _Chain(c.obj, j + sign, reverse, _Prompt(record.next_box), False, c.count + 1)
                    pending.setdefault(j + sign, []).append(carried)
                else:
                    changed |= self._clear(c.obj, j + sign, reverse, step)

    def _unchanged(
        self, c: _Chain, j: int, pending: dict[int, list[_Chain]], step: _Step | None, changed: set[int]
    ) -> bool:
        """Whether carry `c` brings slice j the prompt it had before (same direction): then follow the
        stored records while each got its predecessor's box, and resume (or clear) where they end."""
        old = self.records[c.obj].get(j)
        if c.prompted or old is None or old.reverse != c.reverse or old.prompted or old.prompt != c.prompt:
            return False
        sign, t, prev = (-1 if c.reverse else 1), j, old
        while self._owns(c.obj, t + sign, c.reverse):
            if prev.next_box is None:
                changed |= self._clear(c.obj, t + sign, c.reverse, step)
                break
            rec = self.records[c.obj].get(t + sign)
            carried = _Prompt(prev.next_box)
            if rec is None or rec.reverse != c.reverse or rec.prompted or rec.prompt != carried:
                resumed = _Chain(c.obj, t + sign, c.reverse, carried, False, c.count + abs(t - j) + 1)
                pending.setdefault(t + sign, []).append(resumed)
                break
            t, prev = t + sign, rec
        return True

    def _ahead(self, j: int, reverse: bool, chains: list[_Chain], pending: dict[int, list[_Chain]]) -> list[int]:
        """The slices after j (in the sweep's direction, up to `encode_batch` - 1) the sweep will likely
        segment: where pending carries start, and the reach of the carries on j (one without a slice
        range no further ahead than it came so far, as its mask may vanish)."""
        if self.features is None:
            return []
        sign, ahead = (-1 if reverse else 1), []
        reach = {c.obj: self._reach(c.obj, j + sign, reverse)[: self.features.batch] for c in chains}
        for d in range(1, self.features.batch):
            s = j + sign * d
            wanted = any(s in reach[c.obj] and (self.ranges[c.obj] is not None or d <= max(1, c.count)) for c in chains)
            if wanted or s in pending:
                ahead.append(s)
        return ahead

    def _segment(self, j: int, chains: list[_Chain], ahead: list[int]) -> list[tuple[torch.Tensor, float | None]]:
        """(H, W) logits and predicted IoU (None: not known) of each carry's prompt on slice j: one
        encoding of the slice (batched with `ahead`) and one decoder call per object; a network
        without `encode_images` gets the slice and every box in one call."""
        if self.features is not None:
            out: list[tuple[torch.Tensor, float | None]] = []
            for c in chains:
                one, one_iou = self.features.masks(j, ahead, c.prompt)
                out.append((one[0, 0].float().cpu(), float(one_iou[0])))
            return out
        if any(c.prompt.points or c.prompt.box is None for c in chains):
            raise SessionError("this network takes boxes only: correct with a box")
        boxes = [c.prompt.box for c in chains if c.prompt.box is not None]
        logits, iou = self.slices.masks(self.view[..., j], boxes)
        rows = logits[:, 0].float().cpu()
        return [(rows[n], None if iou is None else float(iou[n])) for n in range(len(chains))]

    def _record(self, c: _Chain, logits: torch.Tensor, iou: float | None) -> _Record:
        ranged = self.ranges[c.obj] is not None
        if not c.prompted and not ranged and self.min_iou is not None and iou is not None and iou < self.min_iou:
            return _Record(c.reverse, False, c.prompt, False, None)  # an unsure carried mask: dropped
        mask = torch.sigmoid(logits) > 0.5
        next_box = self.slices.next_box(mask.numpy(), c.obj)
        if next_box is None and ranged:
            next_box = self.range_box[c.obj]  # a 3D box: its key-slice box again (upstream)
        record = _Record(c.reverse, c.prompted, c.prompt, True, next_box)
        if mask.any():
            rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
            top, bottom, left, right = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            record.top, record.left, record.mask = top, left, mask[top:bottom, left:right].clone()
            if self.overlap == "logit":
                record.logits = logits[top:bottom, left:right].clone()
        return record

    def _compose(self, frames) -> None:
        """Labels of `frames` from the objects' records: where objects overlap, the higher logit wins
        (`overlap="logit"`) or the object given later (`"order"`)."""
        for j in frames:
            labels = torch.zeros((self.height, self.width), dtype=torch.float32)
            best = torch.full((self.height, self.width), -torch.inf)
            for rank, obj in enumerate(self.prompts):
                record = self.records[obj].get(j)
                if record is None or record.mask is None:
                    continue
                h, w = record.mask.shape
                region = (slice(record.top, record.top + h), slice(record.left, record.left + w))
                score = record.logits if record.logits is not None else torch.full((h, w), float(rank))
                area, top = labels[region], best[region]
                win = record.mask & (score > top)
                area[win] = float(obj)
                top[win] = score[win]
            self.labels[..., j] = labels.T if self.transpose else labels


@torch.no_grad()
def box_carry_volume(
    network,
    volume: torch.Tensor,
    prompts: Sequence[ObjectPrompt],
    box_margin: float = 0.0,
    min_area: int = 1,
    transpose: bool = False,
    letterbox: int | None = None,
    overlap: str = "logit",
    min_iou: float | None = None,
    encode_batch: int | None = None,
) -> torch.Tensor:
    """Label volume (H, W, D) float32 (each object its `obj_id`, 0 elsewhere) for a volume
    (C, H, W, D) and box prompts (`ObjectPrompt` with `frame`, `box` and optionally `frame_range`).
    `letterbox=S`: LiteMedSAM's input; `min_iou`: the IoU stop rule; `encode_batch`: slices per
    encoder call (module docstring)."""
    carry = BoxCarry(network, volume, box_margin, min_area, transpose, letterbox, overlap, min_iou, encode_batch)
    return carry.start(prompts)


class BoxCarryInferer(Inferer):
    """`inferer(volumes, network, prompts=...)` -> label volumes (B, 1, H, W, D) by `box_carry_volume`.

    volumes: (B, C, H, W, D) intensities as the network expects them (with `letterbox`, any range:
    the letterbox scales each slice); prompts: per volume a list of `ObjectPrompt` (or its JSON from
    `collate_with_prompts`), box prompts on key slices (a 2D image is a one-slice volume). The output
    keeps the input's metadata (affine). `session(network, volume)`: a `BoxCarry` with these settings.
    """

    def __init__(
        self,
        box_margin: float = 0.0,
        min_area: int = 1,
        transpose: bool = False,
        letterbox: int | None = None,
        overlap: str = "logit",
        min_iou: float | None = None,
        encode_batch: int | None = None,
    ):
        super().__init__()
        if overlap not in OVERLAP_RULES:
            raise ValueError(f"overlap must be one of {OVERLAP_RULES}, got {overlap!r}")
        self.box_margin, self.min_area, self.transpose = box_margin, min_area, transpose
        self.letterbox, self.overlap, self.min_iou, self.encode_batch = letterbox, overlap, min_iou, encode_batch

    def session(self, network, volume: torch.Tensor) -> BoxCarry:
        return BoxCarry(
            unwrap_model(network),
            volume,
            self.box_margin,
            self.min_area,
            self.transpose,
            self.letterbox,
            self.overlap,
            self.min_iou,
            self.encode_batch,
        )

    def __call__(self, inputs: torch.Tensor, network, prompts: Sequence[Sequence[ObjectPrompt] | str]) -> torch.Tensor:
        if inputs.ndim != 5:
            raise ValueError(f"box carry needs volumes (B, C, H, W, D), got shape {tuple(inputs.shape)}")
        if len(prompts) != inputs.shape[0]:
            raise ValueError(f"got {len(prompts)} prompt lists for a batch of {inputs.shape[0]} volumes")
        out = torch.zeros_like(inputs[:, :1], dtype=torch.float32)  # keeps MetaTensor metadata
        for b, volume in enumerate(inputs):
            given = prompts[b]
            volume_prompts = prompts_from_json(given) if isinstance(given, str) else given
            out[b, 0] = self.session(network, volume).start(volume_prompts).to(out.device)
        return out


class BoxPromptInferer(Inferer):
    """`inferer(images, network, boxes=...)` -> mask logits (B, 1, H, W): one box (x0, y0, x1, y1)
    per image, boxes (B, 4) (training and 2D validation of box-prompted models; `box_logits`,
    `letterbox=S` for raw images of any size)."""

    def __init__(self, transpose: bool = False, letterbox: int | None = None):
        super().__init__()
        self.transpose, self.letterbox = transpose, letterbox

    def __call__(self, inputs: torch.Tensor, network, boxes: torch.Tensor) -> torch.Tensor:
        return box_logits(network, inputs, boxes, self.transpose, self.letterbox)
