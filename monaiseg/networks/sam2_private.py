"""Our one third-party patch module: every use of sam2's private code is here (as micro-sam keeps its
patches of segment_anything in one place), so a sam2 upgrade is checked in one file.

- `PatchedVideoPredictor`: sam2's `SAM2VideoPredictor` with three private methods overridden: image
  features kept for a whole run (`inference_state["kept_features"]`), and memories kept in the model's
  dtype outside autocast. `SAM2Segmenter` builds on it.
- Public names for the private methods the package calls: `backbone_features`, `video_res_logits`,
  `track_frame`, `encode_memory`.
- `new_tracking_state`: the dict sam2's `init_state` builds (its 18 keys, checked against sam2's source
  by `tests/networks/test_sam2_private.py`), over frames we produce.
- `has_sam2_extension`: whether sam2's compiled CUDA extension is installed.

`tests/test_package_layers.py` forbids sam2's private names anywhere else in monaiseg.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from sam2.sam2_video_predictor import SAM2VideoPredictor


def has_sam2_extension() -> bool:
    """Whether sam2's CUDA extension (`sam2._C`, hole filling of masks) is importable."""
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        return False
    return True


class PatchedVideoPredictor(SAM2VideoPredictor):
    """sam2's video predictor with our patches of its private methods (sam2's code otherwise unchanged;
    no parameters added). Subclasses register a `pixel_mean` buffer, whose dtype is the model's."""

    pixel_mean: torch.Tensor

    def _memory_dtype(self, features: torch.Tensor) -> torch.Tensor:
        """sam2 stores memories in bfloat16, which only works under autocast; keep the model
        dtype otherwise (e.g. float32 on CPU), where sam2 would fail with a dtype mismatch."""
        if torch.is_autocast_enabled(features.device.type):
            return features
        return features.to(self.pixel_mean.dtype)

    def _get_image_feature(self, inference_state, frame_idx, batch_size):
        """sam2's single-frame feature cache, plus features of the frames in
        `inference_state["keep_frames"]` kept in `inference_state["kept_features"]` for the whole run: sam2
        would encode a frame again after every cache miss. Kept frames share one copy of the positional
        encodings (a function of the feature shapes alone: 21 of a frame's 29 MiB at 512 with Hiera-tiny)."""
        kept = inference_state.get("kept_features")
        if kept is not None and frame_idx in kept:
            inference_state["cached_features"] = {frame_idx: kept[frame_idx]}
        features = super()._get_image_feature(inference_state, frame_idx, batch_size)
        if kept is not None and frame_idx in inference_state.get("keep_frames", ()) and frame_idx not in kept:
            image, backbone_out = inference_state["cached_features"][frame_idx]
            if kept:
                backbone_out = {**backbone_out, "vision_pos_enc": next(iter(kept.values()))[1]["vision_pos_enc"]}
            kept[frame_idx] = (image, backbone_out)
        return features

    def _run_single_frame_inference(self, *args, **kwargs):
        out, masks = super()._run_single_frame_inference(*args, **kwargs)
        if out["maskmem_features"] is not None:
            out["maskmem_features"] = self._memory_dtype(out["maskmem_features"])
        return out, masks

    def _run_memory_encoder(self, *args, **kwargs):
        features, pos_enc = super()._run_memory_encoder(*args, **kwargs)
        return self._memory_dtype(features), pos_enc


def backbone_features(model, backbone_out: dict) -> tuple:
    """sam2's flattened backbone levels of `forward_image`'s output: (backbone_out, features (HW, B, C)
    per level, positional encodings per level, (h, w) per level)."""
    return model._prepare_backbone_features(backbone_out)


def video_res_logits(model, state: dict, masks: torch.Tensor) -> torch.Tensor:
    """Mask logits (K, 1, h, w) of stored tracking outputs at the video's resolution (K, 1, H, W)."""
    return model._get_orig_video_res_output(state, masks)[1]


def track_frame(
    model,
    state: dict,
    outputs: dict,
    frame: int,
    reverse: bool,
    init_cond_frame: bool = False,
    point_inputs: dict | None = None,
    mask_inputs: torch.Tensor | None = None,
    run_mem_encoder: bool = True,
    prev_logits: torch.Tensor | None = None,
) -> dict:
    """sam2's tracking of one object (batch of 1) on `frame`, reading the memory in `outputs` (the
    object's {"cond_frame_outputs", "non_cond_frame_outputs"}); returns the frame's output dict."""
    out, _ = model._run_single_frame_inference(
        inference_state=state,
        output_dict=outputs,
        frame_idx=frame,
        batch_size=1,
        is_init_cond_frame=init_cond_frame,
        point_inputs=point_inputs,
        mask_inputs=mask_inputs,
        reverse=reverse,
        run_mem_encoder=run_mem_encoder,
        prev_sam_mask_logits=prev_logits,
    )
    return out


def encode_memory(
    model, state: dict, frame: int, high_res_masks: torch.Tensor, object_score_logits: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """sam2's memory (features, positional encodings) of one object's mask logits (1, 1, S, S) on
    `frame`, taken as a prompted (point) mask."""
    return model._run_memory_encoder(state, frame, 1, high_res_masks, object_score_logits, is_mask_from_pts=True)


def register_object(model, state: dict, obj_id: int) -> int:
    """Index of object `obj_id` in a sam2 tracking `state`, registering it when new (sam2 lets objects
    be added after tracking started; its `add_new_*` calls do this internally)."""
    return model._obj_id_to_idx(state, obj_id)


def new_tracking_state(model, frames: Sequence[torch.Tensor], height: int, width: int, offload: bool) -> dict:
    """A sam2 video-predictor state (the dict `init_state` builds) over `frames` (3, S, S) we produce
    (e.g. lazily from a volume) instead of sam2's JPEG folder or MP4."""
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
