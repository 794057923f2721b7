"""Our patch module of sam2's private code (`monaiseg.networks.sam2_private`) against the installed sam2:
read from sam2's source and signatures only (no model is built), so a sam2 upgrade that changes what
we rely on fails here first."""

from __future__ import annotations

import ast
import inspect
import textwrap
from types import SimpleNamespace

import torch
from sam2.sam2_video_predictor import SAM2VideoPredictor

from monaiseg.networks.sam2_private import PatchedVideoPredictor, has_sam2_extension, new_tracking_state


def init_state_keys() -> set[str]:
    """The keys sam2's `init_state` writes into its state dict (`inference_state["key"] = ...`)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(SAM2VideoPredictor.init_state)))
    keys = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if (
                    isinstance(target, ast.Subscript)
                    and isinstance(target.value, ast.Name)
                    and target.value.id == "inference_state"
                    and isinstance(target.slice, ast.Constant)
                ):
                    keys.add(target.slice.value)
    return keys


def test_new_tracking_state_has_exactly_the_keys_of_sam2_init_state():
    keys = init_state_keys()
    assert len(keys) >= 18  # the parse found sam2's assignments
    state = new_tracking_state(SimpleNamespace(device=torch.device("cpu")), [], height=4, width=5, offload=True)
    assert set(state) == keys, f"sam2 init_state adds {keys - set(state)}, drops {set(state) - keys}"
    assert state["storage_device"] == torch.device("cpu") and state["video_width"] == 5


def test_the_private_methods_we_patch_and_call_exist_with_the_arguments_we_pass():
    expected = {
        "_get_image_feature": ["self", "inference_state", "frame_idx", "batch_size"],
        "_run_memory_encoder": [
            "self",
            "inference_state",
            "frame_idx",
            "batch_size",
            "high_res_masks",
            "object_score_logits",
            "is_mask_from_pts",
        ],
        "_get_orig_video_res_output": ["self", "inference_state", "any_res_masks"],
        "_prepare_backbone_features": ["self", "backbone_out"],
    }
    for name, params in expected.items():
        assert list(inspect.signature(getattr(SAM2VideoPredictor, name)).parameters) == params, name
    single = inspect.signature(SAM2VideoPredictor._run_single_frame_inference).parameters
    assert {"inference_state", "output_dict", "frame_idx", "batch_size", "is_init_cond_frame"} <= set(single)
    assert {"point_inputs", "mask_inputs", "reverse", "run_mem_encoder", "prev_sam_mask_logits"} <= set(single)
    overridden = {n for n, v in vars(PatchedVideoPredictor).items() if callable(v) and n.startswith("_")}
    assert overridden - {"_memory_dtype"} <= set(dir(SAM2VideoPredictor))  # we override, never invent


def test_has_sam2_extension_answers_without_raising():
    assert isinstance(has_sam2_extension(), bool)
