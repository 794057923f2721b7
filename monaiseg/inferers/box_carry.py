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

Objects on one slice share one network call (the slice is encoded once for all their boxes), so
each slice is encoded at most twice (once going up, once going down). Where objects overlap, the
higher logit wins (`overlap="logit"`) or the object later in the prompt list (`overlap="order"`:
upstream LiteMedSAM writes its objects one after the other).

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

import numpy as np
import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

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


def _key_boxes(prompts: Sequence[ObjectPrompt], depth: int, height: int, width: int) -> dict[int, ObjectPrompt]:
    """One box prompt per object id, checked against the volume."""
    starts: dict[int, ObjectPrompt] = {}
    for prompt in prompts:
        prompt.validate(num_frames=depth, height=height, width=width)
        if prompt.box is None or prompt.points is not None or prompt.mask is not None:
            raise ValueError(
                f"object {prompt.obj_id}: box carry takes a box prompt only (MedSAM is box-prompted), "
                "got points or a mask"
            )
        if prompt.obj_id in starts:
            raise ValueError(f"object {prompt.obj_id}: more than one key-slice box; give one box per object")
        starts[prompt.obj_id] = prompt
    if not starts:
        raise ValueError("no box prompts to segment")
    return starts


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

    def next_box(self, mask: np.ndarray, obj_id: int) -> Box | None:
        if int(mask.sum()) < self.min_area:
            return None
        return grow_box(mask_box(mask), self.box_margin, self.height, self.width)

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

    def next_box(self, mask: np.ndarray, obj_id: int) -> Box | None:
        return None if int(mask.sum()) < self.min_area else self.frame.mask_box(mask, obj_id)

    def masks(self, image: torch.Tensor, boxes: Sequence[Box]) -> tuple[torch.Tensor, torch.Tensor | None]:
        return _letterbox_masks(self.network, image, boxes, self.frame)


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
) -> torch.Tensor:
    """Label volume (H, W, D) float32 (each object its `obj_id`, 0 elsewhere) for a volume
    (C, H, W, D) and one key-slice box per object (`ObjectPrompt` with `frame`, `box` and
    optionally `frame_range`). `letterbox=S`: LiteMedSAM's input; `min_iou`: the IoU stop rule
    (module docstring)."""
    if overlap not in OVERLAP_RULES:
        raise ValueError(f"overlap must be one of {OVERLAP_RULES}, got {overlap!r}")
    if isinstance(volume, MetaTensor):
        volume = volume.as_tensor()
    height, width, depth = volume.shape[-3:]
    starts = _key_boxes(prompts, depth, height, width)
    if transpose:  # the network's view: rows along the volume's second axis
        volume = volume.transpose(-3, -2)
        height, width = width, height
    slices = (
        _WholeSlice(network, height, width, box_margin, min_area)
        if letterbox is None
        else _Letterboxed(network, height, width, letterbox, min_area)
    )
    key = {obj: p.frame for obj, p in starts.items()}
    first = {obj: p.frame_range[0] if p.frame_range else 0 for obj, p in starts.items()}
    last = {obj: p.frame_range[1] if p.frame_range else depth - 1 for obj, p in starts.items()}
    key_box = {obj: slices.key_box(_box(p, transpose)) for obj, p in starts.items()}
    rank = {obj: float(n) for n, obj in enumerate(starts)}
    labels = torch.zeros((height, width, depth), dtype=torch.float32)
    best = torch.full((height, width, depth), -torch.inf)

    def segment(k: int, rows: dict[int, Box]) -> dict[int, Box]:
        """Segment slice k for {obj: box}; write the winners; return {obj: box for the next slice}."""
        logits, iou = slices.masks(volume[..., k], list(rows.values()))
        logits = logits[:, 0].float().cpu()
        carried = {}
        for n, (obj, logit) in enumerate(zip(rows, logits)):
            carried_mask = starts[obj].frame_range is None and k != key[obj]
            if carried_mask and min_iou is not None and iou is not None and float(iou[n]) < min_iou:
                continue  # an unsure carried mask: dropped, the object ends in this direction
            mask = torch.sigmoid(logit) > 0.5
            score = logit if overlap == "logit" else torch.full_like(logit, rank[obj])
            win = mask & (score > best[..., k])
            labels[..., k][win] = float(obj)
            best[..., k][win] = score[win]
            box = slices.next_box(mask.numpy(), obj)
            if box is None and starts[obj].frame_range is not None:
                box = key_box[obj]  # a 3D box: its key-slice box again (upstream)
            if box is not None:
                carried[obj] = box
        return carried

    from_key: dict[int, Box] = {}  # per object: the box for slice key - 1, from its key-slice mask
    carried: dict[int, Box] = {}
    for k in range(min(key.values()), depth):  # upwards, key slices included
        rows = {obj: key_box[obj] for obj in starts if key[obj] == k}
        rows |= {obj: box for obj, box in carried.items() if k <= last[obj]}
        if not rows:
            if k > max(key.values()):
                break
            continue
        carried = segment(k, rows)
        from_key |= {obj: box for obj, box in carried.items() if key[obj] == k}
    carried = {}
    for k in range(max(key.values()) - 1, -1, -1):  # downwards from each key slice
        carried |= {obj: box for obj, box in from_key.items() if key[obj] == k + 1}
        carried = {obj: box for obj, box in carried.items() if k >= first[obj]}
        if not carried:
            if k < min(key.values()):
                break
            continue
        carried = segment(k, carried)
    return labels.transpose(0, 1) if transpose else labels


class BoxCarryInferer(Inferer):
    """`inferer(volumes, network, prompts=...)` -> label volumes (B, 1, H, W, D) by `box_carry_volume`.

    volumes: (B, C, H, W, D) intensities as the network expects them (with `letterbox`, any range:
    the letterbox scales each slice); prompts: per volume a list of `ObjectPrompt` (or its JSON from
    `collate_with_prompts`), one box per object on its key slice (a 2D image is a one-slice volume).
    The output keeps the input's metadata (affine).
    """

    def __init__(
        self,
        box_margin: float = 0.0,
        min_area: int = 1,
        transpose: bool = False,
        letterbox: int | None = None,
        overlap: str = "logit",
        min_iou: float | None = None,
    ):
        super().__init__()
        if overlap not in OVERLAP_RULES:
            raise ValueError(f"overlap must be one of {OVERLAP_RULES}, got {overlap!r}")
        self.box_margin, self.min_area, self.transpose = box_margin, min_area, transpose
        self.letterbox, self.overlap, self.min_iou = letterbox, overlap, min_iou

    def __call__(self, inputs: torch.Tensor, network, prompts: Sequence[Sequence[ObjectPrompt] | str]) -> torch.Tensor:
        model = unwrap_model(network)  # DistributedDataParallel
        if inputs.ndim != 5:
            raise ValueError(f"box carry needs volumes (B, C, H, W, D), got shape {tuple(inputs.shape)}")
        if len(prompts) != inputs.shape[0]:
            raise ValueError(f"got {len(prompts)} prompt lists for a batch of {inputs.shape[0]} volumes")
        out = torch.zeros_like(inputs[:, :1], dtype=torch.float32)  # keeps MetaTensor metadata
        for b, volume in enumerate(inputs):
            given = prompts[b]
            volume_prompts = prompts_from_json(given) if isinstance(given, str) else given
            labels = box_carry_volume(
                model,
                volume,
                volume_prompts,
                self.box_margin,
                self.min_area,
                self.transpose,
                self.letterbox,
                self.overlap,
                self.min_iou,
            )
            out[b, 0] = labels.to(out.device)
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
