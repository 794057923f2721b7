"""Engines: SAM2 volume propagation, MedSAM box carry, SAM-Med2D click simulation and interactive
training, SurgicalSAM class prompting and image-bank re-sampling, the image-embedding cache,
inferers, clip training, collation, handlers (best model, NaN-loss stop, resumable checkpoints)
and evaluation reports."""

from .box_baseline import BoxPromptComparison
from .box_carry import BoxCarryInferer, BoxPromptInferer, box_carry_volume
from .class_prompt import (
    ClassPromptInferer,
    OutputAsList,
    PrepareClassPromptBatch,
    compose_class_map,
    presence,
    require_labels,
)
from .clicks import jittered_boxes, sample_error_clicks, sample_foreground_clicks
from .clips import ClipCurriculum, PrepareCellClipBatch
from .collate import collate_with_prompts
from .embedding_cache import EmbeddingCache, EmbeddingCacheLogger, encoder_identity
from .endovis_report import EndoVisReportWriter
from .handlers import BestModelSaver, MetricsSummaryWriter, save_model_atomic
from .image_bank import ImageBank
from .interactive import (
    InteractiveInferer,
    InteractiveIteration,
    InteractiveReportWriter,
    ObjectPromptInferer,
    PrepareInteractiveBatch,
    decode_prompts,
)
from .inferers import CellTrackingInferer, InstancePromptInferer, PrepareOptionalBoxes, PropagationInferer, instance_ids
from .nan_guard import NonFiniteLossError, StopOnNonFiniteLoss
from .propagation import ObjectPrompt, propagate_volume
from .reports import CellReportWriter, TrackingReportWriter
from .resume import RandomStates, ResumableCheckpoint, find_generators, latest_checkpoint
