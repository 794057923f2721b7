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
from .surgical_sam import SurgicalSAM, build_surgical_sam, load_surgicalsam_release, read_surgicalsam_file
from .tiny_vit import TinyViT
from .trainable import freeze_except, parameter_report, trainable_parameters
