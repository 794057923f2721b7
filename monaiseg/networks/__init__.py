"""Networks: the SAM2 wrapper, checkpoint loading, freezing policy and PEFT parts
(LoRA on fused q/k/v, decoder adapters, density prompt, BloodCellSAM2's PEFT SAM2)."""

from .adapters import BottleneckAdapter, add_mlp_adapters
from .checkpoint import CheckpointMismatchError, load_model_weights, load_state_dict_strict, read_checkpoint
from .density import DensityPromptEncoder
from .lora import FusedQKVLoRA, add_qkv_lora, merge_lora, merged_state_dict
from .peft_sam2 import (
    STAGE1_TRAINABLE,
    STAGE2_TRAINABLE,
    build_peft_sam2,
    is_peft_key,
    load_peft_checkpoint,
    load_peft_weights,
    peft_state_dict,
    save_peft_weights,
)
from .sam2_builder import SAM2_CONFIGS, build_sam2_segmenter, load_sam2_checkpoint, read_sam2_checkpoint
from .sam2_segmenter import SAM2Segmenter
from .trainable import freeze_except, parameter_report, trainable_parameters
