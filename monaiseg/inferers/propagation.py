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
highest logit. Both passes visit the frames from the first to the last prompted frame: their image features
are computed once, in the forward pass, and kept for the backward one (up to `SHARED_FRAMES` frames; beyond
that only the prompted frames' features are kept; `monaiseg.inferers.tracking`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from monai.inferers import Inferer

from monaiseg.inferers.prompt_spec import PromptSpec
from monaiseg.inferers.session import owns_frame
from monaiseg.inferers.tracking import LazyFrames, add_prompt, frames_in_both_passes
from monaiseg.inferers.volume_session import VolumeSession
from monaiseg.networks.sam2_private import new_tracking_state
from monaiseg.prompts import ObjectPrompt, batch_prompt_lists
from monaiseg.utils.batch import unwrap_model


def memory_window(model) -> int:
    """How many past frames sam2 reads when tracking a frame (mask memories and object pointers)."""
    return max(model.num_maskmem, model.max_obj_ptrs_in_encoder if model.use_obj_ptrs_in_encoder else 0)


def _drop_stale_outputs(state: dict, frame: int, reverse: bool, window: int) -> None:
    """Forget non-prompted frame outputs that tracking past `frame` can no longer read."""
    for per_obj in state["output_dict_per_obj"].values():
        stored = per_obj["non_cond_frame_outputs"]
        for t in [t for t in stored if (t - frame if reverse else frame - t) >= window]:
            del stored[t]


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
    key_features: dict = {}  # image features of the frames both passes visit, encoded once
    starts = {False: min(p.frame for p in prompts), True: max(p.frame for p in prompts)}
    for reverse in (False, True):
        state = new_tracking_state(model, frames, height, width, offload_to_cpu)
        state["kept_features"], state["keep_frames"] = key_features, frames_in_both_passes(prompts)
        for prompt in prompts:
            add_prompt(model, state, prompt)
        for frame, obj_ids, masks in model.propagate_in_video(state, start_frame_idx=starts[reverse], reverse=reverse):
            logits = masks[:, 0].float().cpu()  # (objects, H, W)
            # objects whose mask on this frame belongs to this direction
            own = [i for i, obj in enumerate(obj_ids) if owns_frame(keys_per_obj[obj], frame, reverse)]
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


class PropagationInferer(Inferer):
    """`inferer(volumes, network, prompts=...)` -> label volumes (B, 1, I, J, K).

    volumes: (B, C, I, J, K) in [0, 1]; prompts: per volume a list of `ObjectPrompt` (or its
    JSON from `collate_with_prompts`), slices along K. The output keeps the input's metadata
    (affine), so it is saved in its geometry. `session(network, volume)`: a `VolumeSession` kept
    for corrections.
    """

    prompt_spec: ClassVar[PromptSpec] = PromptSpec(frozenset({"points", "box", "mask"}), frozenset({3}), "objects")

    def __init__(self, offload_to_cpu: bool = True):
        super().__init__()
        self.offload_to_cpu = offload_to_cpu

    def session(self, network, volume: torch.Tensor) -> VolumeSession:
        return VolumeSession(unwrap_model(network), volume, self.offload_to_cpu)

    def __call__(self, inputs: torch.Tensor, network, prompts: Sequence[Sequence[ObjectPrompt] | str]) -> torch.Tensor:
        model = unwrap_model(network)  # DistributedDataParallel
        prompt_lists = batch_prompt_lists(prompts, inputs.shape[0])
        out = torch.zeros_like(inputs[:, :1], dtype=torch.float32)  # keeps MetaTensor metadata
        for b, volume in enumerate(inputs):
            labels = propagate_volume(model, volume, prompt_lists[b], offload_to_cpu=self.offload_to_cpu)
            out[b, 0] = labels.to(out.device)
        return out
