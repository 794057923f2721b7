"""Inferers (MONAI's `Inferer`): how a network turns an image and its prompts into a prediction.
SAM2 propagation through volumes, MedSAM box carry, SAM-Med2D interactive evaluation, user-prompt
inference, SurgicalSAM class prompts and cell instance / tracking inference."""

from .box_carry import BoxCarryInferer, BoxPromptInferer, box_carry_volume, box_logits, grow_box
from .cells import CellTrackingInferer, InstancePromptInferer, instance_ids
from .class_prompt import ClassPromptInferer, compose_class_map, image_embeddings, presence
from .decoding import append_clicks, decode_prompts
from .interactive import InteractiveInferer, image_seed, modes_onehot, parse_mode
from .object_prompt import ObjectPromptInferer
from .precision import AutocastInferer, with_amp
from .propagation import PropagationInferer, memory_window, propagate_volume

__all__ = [
    "AutocastInferer",
    "BoxCarryInferer",
    "BoxPromptInferer",
    "CellTrackingInferer",
    "ClassPromptInferer",
    "InstancePromptInferer",
    "InteractiveInferer",
    "ObjectPromptInferer",
    "PropagationInferer",
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
    "parse_mode",
    "presence",
    "propagate_volume",
    "with_amp",
]
