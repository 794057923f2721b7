"""Box-prompted 2D segmentation of volumes slice by slice, the box carried from slice to slice
(MedSAM's 3D use; docs/methods.md#medsam).

Each object starts on its key slice k0 with a given box. Its mask there gives the box for slices
k0 + 1 and k0 - 1 (the mask's bounding box grown by `box_margin` pixels and clipped to the slice),
their masks give the boxes for k0 + 2 and k0 - 2, and so on in both directions until the mask
vanishes (fewer than `min_area` pixels) or the volume ends. Objects on one slice share one network
call (SAM encodes the slice once for all their boxes), so each slice is encoded at most twice (once
going up, once going down). Where objects overlap, the higher logit wins.

Conventions as in `monaiseg.transforms.prompts`: a volume is (C, H, W, D), slice k is [..., k]
with rows along H; a box is (x0, y0, x1, y1) with x along W (columns), inclusive pixel indices.
The network is any module called as `network(images (1, C, H, W), boxes=(K, 4)) -> logits
(K, M, H, W)` (`SAMSegmenter`); channel 0 is used and logit > 0 (sigmoid > 0.5) is foreground.

`transpose=True` gives the network every slice with its two axes swapped (boxes swapped to match)
and swaps the logits back. MONAI reads NIfTI and PNG x first, while MedSAM was trained on arrays
read row first (SimpleITK, skimage), so this shows the network the slices as upstream does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from monai.inferers import Inferer

from monaiseg.prompts import ObjectPrompt, mask_box, prompts_from_json
from monaiseg.utils.batch import unwrap_model


def box_logits(network, images: torch.Tensor, boxes: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """Mask logits (K, 1, H, W) for images (B, C, H, W) and boxes (K, 4); K = B (one box per
    image) or B = 1 (K boxes on one image). Differentiable (training uses it)."""
    if isinstance(images, MetaTensor):
        images = images.as_tensor()
    boxes = torch.as_tensor(boxes, dtype=torch.float32, device=images.device).reshape(-1, 4)
    if transpose:
        images, boxes = images.transpose(-1, -2), boxes[:, [1, 0, 3, 2]]
    logits = network(images, boxes=boxes)[:, :1]
    return logits.transpose(-1, -2) if transpose else logits


def grow_box(box: Sequence[float], margin: float, height: int, width: int) -> tuple[float, float, float, float]:
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


@torch.no_grad()
def box_carry_volume(
    network,
    volume: torch.Tensor,
    prompts: Sequence[ObjectPrompt],
    box_margin: float = 0.0,
    min_area: int = 1,
    transpose: bool = False,
) -> torch.Tensor:
    """Label volume (H, W, D) float32 (each object its `obj_id`, 0 elsewhere) for a volume
    (C, H, W, D) and one key-slice box per object (`ObjectPrompt` with `frame` and `box`)."""
    height, width, depth = volume.shape[-3:]
    starts = _key_boxes(prompts, depth, height, width)
    key = {obj: p.frame for obj, p in starts.items()}
    labels = torch.zeros((height, width, depth), dtype=torch.float32)
    best = torch.full((height, width, depth), -torch.inf)

    def segment(k: int, rows: dict[int, Sequence[float]]) -> dict[int, tuple[float, float, float, float]]:
        """Segment slice k for {obj: box}; write the winners; return {obj: box for the next slice} of live objects."""
        logits = box_logits(network, volume[..., k].unsqueeze(0), torch.tensor(list(rows.values())), transpose)
        logits = logits[:, 0].float().cpu()
        live = {}
        for obj, logit in zip(rows, logits):
            mask = logit > 0
            win = mask & (logit > best[..., k])
            labels[..., k][win] = float(obj)
            best[..., k][win] = logit[win]
            if int(mask.sum()) >= min_area:
                live[obj] = grow_box(mask_box(mask.numpy()), box_margin, height, width)
        return live

    from_key: dict[int, tuple[float, float, float, float]] = {}  # box for key - 1, from the key-slice mask
    carried: dict[int, Sequence[float]] = {}
    for k in range(min(key.values()), depth):  # upwards, key slices included
        rows = {obj: starts[obj].box for obj in starts if key[obj] == k} | carried
        if not rows:
            if k > max(key.values()):
                break
            continue
        carried = segment(k, rows)
        from_key.update({obj: box for obj, box in carried.items() if key[obj] == k})
    carried = {}
    for k in range(max(key.values()) - 1, -1, -1):  # downwards from each key slice
        carried |= {obj: box for obj, box in from_key.items() if key[obj] == k + 1}
        if not carried:
            if k < min(key.values()):
                break
            continue
        carried = segment(k, carried)
    return labels


class BoxCarryInferer(Inferer):
    """`inferer(volumes, network, prompts=...)` -> label volumes (B, 1, H, W, D) by `box_carry_volume`.

    volumes: (B, C, H, W, D) intensities as the network expects them; prompts: per volume a list of
    `ObjectPrompt` (or its JSON from `collate_with_prompts`), one box per object on its key slice
    (a 2D image is a one-slice volume). The output keeps the input's metadata (affine).
    """

    def __init__(self, box_margin: float = 0.0, min_area: int = 1, transpose: bool = False):
        super().__init__()
        self.box_margin, self.min_area, self.transpose = box_margin, min_area, transpose

    def __call__(self, inputs: torch.Tensor, network, prompts: Sequence[Sequence[ObjectPrompt] | str]) -> torch.Tensor:
        model = unwrap_model(network)  # DistributedDataParallel
        if inputs.ndim != 5:
            raise ValueError(f"box carry needs volumes (B, C, H, W, D), got shape {tuple(inputs.shape)}")
        if len(prompts) != inputs.shape[0]:
            raise ValueError(f"got {len(prompts)} prompt lists for a batch of {inputs.shape[0]} volumes")
        out = torch.zeros_like(inputs[:, :1], dtype=torch.float32)  # keeps MetaTensor metadata
        for b, volume in enumerate(inputs):
            volume_prompts = prompts_from_json(prompts[b]) if isinstance(prompts[b], str) else prompts[b]
            labels = box_carry_volume(model, volume, volume_prompts, self.box_margin, self.min_area, self.transpose)
            out[b, 0] = labels.to(out.device)
        return out


class BoxPromptInferer(Inferer):
    """`inferer(images, network, boxes=...)` -> mask logits (B, 1, H, W): one box (x0, y0, x1, y1)
    per image, boxes (B, 4) (training and 2D validation of box-prompted models; `box_logits`)."""

    def __init__(self, transpose: bool = False):
        super().__init__()
        self.transpose = transpose

    def __call__(self, inputs: torch.Tensor, network, boxes: torch.Tensor) -> torch.Tensor:
        return box_logits(network, inputs, boxes, self.transpose)
