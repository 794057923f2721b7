"""Box-prompted 2D segmentation of volumes slice by slice, the box carried from slice to slice
(MedSAM's and LiteMedSAM's 3D use; docs/methods.md#medsam).

Each object starts on its key slice k0 with a given box (or clicks: the first foreground click seeds
a box, `monaiseg.inferers.click_seed`). Its mask there gives the box for slices
k0 + 1 and k0 - 1, their masks give the boxes for k0 + 2 and k0 - 2, and so on in both directions.
An object without a slice range ends where its mask vanishes (fewer than `min_area` pixels), where
the network's predicted IoU of a carried mask falls below `min_iou` (that mask is dropped; SAM's
own quality estimate, as the `pred_iou_thresh` of SAM's automatic mask generator: LiteMedSAM finds
some blob in any box, so its masks rarely vanish), or where the volume ends. An object with a slice
range (`ObjectPrompt.frame_range`, a 3D box) covers exactly its range, and a slice after an empty
mask is prompted with the key-slice box again (LiteMedSAM's 3D inference; no IoU rule).

An object may be prompted on several slices: a slice is carried from the nearer prompted slice
(the one below on a tie; `monaiseg.inferers.session.owns_frame`), so every carry ends where
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
batch slice by slice). The features of slices the downward sweep needs again are kept from the
upward one (`monaiseg.inferers.slice_features`). Upstream's 3D loop encodes every slice once per
object.

The parts: the settings (`box_carry_settings`: `BoxCarrySettings`), the session kept for corrections
(`box_carry_session`: `BoxCarry`), each slice's prompt and decoding (`carry_decode`), how the network
sees a slice (`slice_views`: the whole slice for MedSAM, `letterbox=S` for LiteMedSAM), the
slice-feature cache (`slice_features`) and the stored records (`carry_records`).

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
from typing import Any, ClassVar

import torch
from monai.inferers import Inferer

from monaiseg.inferers.box_carry_session import BoxCarry
from monaiseg.inferers.box_carry_settings import BoxCarrySettings
from monaiseg.inferers.prompt_spec import PromptSpec
from monaiseg.prompts import ObjectPrompt, batch_prompt_lists
from monaiseg.utils.batch import unwrap_model


@torch.no_grad()
def box_carry_volume(network, volume: torch.Tensor, prompts: Sequence[ObjectPrompt], **settings: Any) -> torch.Tensor:
    """Label volume (H, W, D) float32 (each object its `obj_id`, 0 elsewhere) for a volume
    (C, H, W, D) and box prompts (`ObjectPrompt` with `frame`, `box` and optionally `frame_range`).
    `settings`: the fields of `BoxCarrySettings` (e.g. `letterbox=256`, `min_iou=0.8`)."""
    return BoxCarry(network, volume, BoxCarrySettings(**settings)).start(prompts)


class BoxCarryInferer(Inferer):
    """`inferer(volumes, network, prompts=...)` -> label volumes (B, 1, H, W, D) by box carry.

    volumes: (B, C, H, W, D) intensities as the network expects them (with `letterbox`, any range:
    the letterbox scales each slice); prompts: per volume a list of `ObjectPrompt` (or its JSON from
    `collate_with_prompts`), box prompts on key slices (a 2D image is a one-slice volume). The output
    keeps the input's metadata (affine). `settings`: the fields of `BoxCarrySettings`, as keywords (so
    a bundle config sets them). `session(network, volume)`: a `BoxCarry` with these settings.
    """

    prompt_spec: ClassVar[PromptSpec] = PromptSpec(frozenset({"box", "points"}), frozenset({2, 3}), "objects")

    def __init__(self, **settings: Any):
        super().__init__()
        self.settings = BoxCarrySettings(**settings)

    def session(self, network, volume: torch.Tensor) -> BoxCarry:
        return BoxCarry(unwrap_model(network), volume, self.settings)

    def __call__(self, inputs: torch.Tensor, network, prompts: Sequence[Sequence[ObjectPrompt] | str]) -> torch.Tensor:
        if inputs.ndim != 5:
            raise ValueError(f"box carry needs volumes (B, C, H, W, D), got shape {tuple(inputs.shape)}")
        prompt_lists = batch_prompt_lists(prompts, inputs.shape[0])
        out = torch.zeros_like(inputs[:, :1], dtype=torch.float32)  # keeps MetaTensor metadata
        for b, volume in enumerate(inputs):
            out[b, 0] = self.session(network, volume).start(prompt_lists[b]).to(out.device)
        return out
