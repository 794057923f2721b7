"""Engines: SAM2 volume propagation, inferers, clip training, collation and handlers."""

from .clips import ClipCurriculum, PrepareCellClipBatch
from .collate import collate_with_prompts
from .handlers import BestModelSaver, MetricsSummaryWriter, save_model_atomic
from .inferers import CellTrackingInferer, InstancePromptInferer, PrepareOptionalBoxes, PropagationInferer, instance_ids
from .propagation import ObjectPrompt, propagate_volume
from .reports import CellReportWriter, TrackingReportWriter
