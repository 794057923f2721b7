"""Networks: the SAM2 wrapper, checkpoint loading and freezing policy."""

from .checkpoint import CheckpointMismatchError, load_state_dict_strict
from .sam2_builder import SAM2_CONFIGS, build_sam2_segmenter, load_sam2_checkpoint
from .sam2_segmenter import SAM2Segmenter
from .trainable import freeze_except, parameter_report, trainable_parameters
