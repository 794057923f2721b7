"""Networks: the SAM2 and SAM / MedSAM / SAM-Med2D wrappers, checkpoint loading, freezing
policy and PEFT parts (LoRA on fused q/k/v, decoder adapters, density prompt, BloodCellSAM2's
PEFT SAM2), SAM-AutoMed's MobileNetV3 prompt generator, SAM-MedCls's classifier, SurgicalSAM's
prototype-based class prompt encoder and HF-SAM (LoRA q,v SAM, AWFFM, two-step skip-feature decoding)."""

from .adapters import BottleneckAdapter, add_mlp_adapters
from .attention import ChannelAttention, SpatialAttention
from .auto_prompt import MobileNetPromptGenerator, mobilenet_v3_features
from .awffm import AWFFM
from .checkpoint import CheckpointMismatchError, load_model_weights, load_state_dict_strict, read_checkpoint
from .density import DensityPromptEncoder
from .encoder_runtime import (
    RUNTIMES,
    ExportedEncoder,
    RuntimeUnavailableError,
    default_runtime,
    resolve_runtime,
    runtime_installed,
)
from .hf_sam import (
    HF_SAM_TRAINABLE,
    HFSAM,
    SkipFusionDecoder,
    build_hf_sam,
    hf_sam_adapter_state_dict,
    load_hf_sam_checkpoint,
    upstream_key_map,
)
from .lite_medsam import (
    LiteMedSAMWeightsError,
    build_lite_medsam,
    lite_medsam_asset,
    load_lite_medsam_checkpoint,
    verify_lite_medsam_file,
)
from .lora import FusedQKVLoRA, add_qkv_lora, merge_lora, merged_state_dict
from .peft_sam2 import (
    BLOODCELL_STAGE1_TRAINABLE,
    BLOODCELL_STAGE2_TRAINABLE,
    build_peft_sam2,
    is_peft_key,
    load_peft_checkpoint,
    load_peft_weights,
    peft_state_dict,
    save_peft_weights,
)
from .prototype_prompt import LearnablePrototypes, PrototypePromptEncoder, class_embeddings_from_masks
from .sam2_builder import SAM2_CONFIGS, build_sam2_segmenter, load_sam2_checkpoint, read_sam2_checkpoint
from .sam2_segmenter import SAM2Segmenter
from .sam_automed import SAMAutoMed, build_sam_automed
from .sam_builder import (
    SAM_VARIANTS,
    build_sam_segmenter,
    default_global_attn_indexes,
    extract_sam_med2d_weights,
    load_sam_checkpoint,
    read_sam_checkpoint,
    resize_sam_state_dict,
)
from .sam_classifier import SAMClassifier
from .sam_segmenter import SAMMed2DAdapter, SAMSegmenter, add_sam_med2d_adapters
from .surgical_sam import (
    SURGICAL_SAM_TRAINABLE,
    SurgicalSAM,
    build_surgical_sam,
    load_surgicalsam_release,
    read_surgicalsam_file,
)
from .tensorrt import trt_network
from .tiny_vit import TinyViT
from .trainable import freeze_except, parameter_report, trainable_parameters

__all__ = [
    "AWFFM",
    "BLOODCELL_STAGE1_TRAINABLE",
    "BLOODCELL_STAGE2_TRAINABLE",
    "BottleneckAdapter",
    "ChannelAttention",
    "CheckpointMismatchError",
    "DensityPromptEncoder",
    "ExportedEncoder",
    "FusedQKVLoRA",
    "HFSAM",
    "HF_SAM_TRAINABLE",
    "LearnablePrototypes",
    "LiteMedSAMWeightsError",
    "MobileNetPromptGenerator",
    "PrototypePromptEncoder",
    "RUNTIMES",
    "RuntimeUnavailableError",
    "SAM2Segmenter",
    "SAM2_CONFIGS",
    "SAMAutoMed",
    "SAMClassifier",
    "SAMMed2DAdapter",
    "SAMSegmenter",
    "SAM_VARIANTS",
    "SURGICAL_SAM_TRAINABLE",
    "SkipFusionDecoder",
    "SpatialAttention",
    "SurgicalSAM",
    "TinyViT",
    "add_mlp_adapters",
    "add_qkv_lora",
    "add_sam_med2d_adapters",
    "build_hf_sam",
    "build_lite_medsam",
    "build_peft_sam2",
    "build_sam2_segmenter",
    "build_sam_automed",
    "build_sam_segmenter",
    "build_surgical_sam",
    "class_embeddings_from_masks",
    "default_global_attn_indexes",
    "default_runtime",
    "extract_sam_med2d_weights",
    "freeze_except",
    "hf_sam_adapter_state_dict",
    "is_peft_key",
    "lite_medsam_asset",
    "load_hf_sam_checkpoint",
    "load_lite_medsam_checkpoint",
    "load_model_weights",
    "load_peft_checkpoint",
    "load_peft_weights",
    "load_sam2_checkpoint",
    "load_sam_checkpoint",
    "load_state_dict_strict",
    "load_surgicalsam_release",
    "merge_lora",
    "merged_state_dict",
    "mobilenet_v3_features",
    "parameter_report",
    "peft_state_dict",
    "read_checkpoint",
    "read_sam2_checkpoint",
    "read_sam_checkpoint",
    "read_surgicalsam_file",
    "resize_sam_state_dict",
    "resolve_runtime",
    "runtime_installed",
    "save_peft_weights",
    "trainable_parameters",
    "trt_network",
    "upstream_key_map",
    "verify_lite_medsam_file",
]
