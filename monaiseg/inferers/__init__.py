"""Inferers (MONAI's `Inferer`): how a network turns an image and its prompts into a prediction.
SAM2 propagation through volumes, MedSAM box carry, SAM-Med2D interactive evaluation, user-prompt
inference, SurgicalSAM class prompts and cell instance / tracking inference."""

from .box_carry import BoxCarryInferer, box_carry_volume
from .box_carry_session import BoxCarry
from .box_carry_settings import BoxCarrySettings
from .box_prompt import BoxPromptInferer, box_logits
from .cells import CellTrackingInferer, InstancePromptInferer, instance_ids
from .class_prompt import ClassPromptInferer, compose_class_map, image_embeddings, presence
from .decoding import append_clicks, decode_prompts
from .interactive import InteractiveInferer, image_seed, modes_onehot, parse_mode
from .object_masks import ObjectMasksInferer, object_masks, with_object_masks
from .object_prompt import ObjectPromptInferer
from .precision import AutocastInferer, with_amp
from .prompt_spec import PromptSpec
from .propagation import PropagationInferer, memory_window, propagate_volume
from .session import InteractiveSession, SessionError
from .slice_views import grow_box
from .volume_session import VolumeSession

__all__ = [
    "AutocastInferer",
    "BoxCarry",
    "BoxCarryInferer",
    "BoxCarrySettings",
    "BoxPromptInferer",
    "CellTrackingInferer",
    "ClassPromptInferer",
    "InstancePromptInferer",
    "InteractiveInferer",
    "InteractiveSession",
    "ObjectMasksInferer",
    "ObjectPromptInferer",
    "PromptSpec",
    "PropagationInferer",
    "SessionError",
    "VolumeSession",
    "append_clicks",
    "box_carry_volume",
    "box_logits",
    "compose_class_map",
    "decode_prompts",
    "grow_box",
    "image_embeddings",
    "image_seed",
    "instance_ids",
    "memory_window",
    "modes_onehot",
    "object_masks",
    "parse_mode",
    "presence",
    "propagate_volume",
    "with_amp",
    "with_object_masks",
]
