"""Event handlers (ignite / MONAI style, `attach(engine)`): model saving, resumable checkpoints, the
NaN-loss stop, evaluation report writers (report.html), validation overlays, the clip-length curriculum and
logging helpers."""

from .box_baseline import BoxPromptComparison
from .case_failures import CaseFailures
from .cell_reports import CellReportWriter, TrackingReportWriter
from .classification_report import ClassificationReportWriter
from .clip_curriculum import ClipCurriculum
from .embedding_cache_logger import EmbeddingCacheLogger
from .endovis_report import EndoVisReportWriter
from .evaluation_report import EvaluationReport
from .interactive_report import InteractiveReportWriter
from .metrics_summary import MetricsSummaryWriter
from .mlflow_run import add_to_mlflow_run, log_to_mlflow_run
from .model_saver import BestModelSaver, save_model_atomic
from .nan_guard import NonFiniteLossError, StopOnNonFiniteLoss
from .output_as_list import OutputAsList
from .resume import RandomStates, ResumableCheckpoint, find_generators, latest_checkpoint
from .validation_overlays import ValidationOverlays, check_writable

__all__ = [
    "BestModelSaver",
    "BoxPromptComparison",
    "CaseFailures",
    "CellReportWriter",
    "ClassificationReportWriter",
    "ClipCurriculum",
    "EmbeddingCacheLogger",
    "EndoVisReportWriter",
    "EvaluationReport",
    "InteractiveReportWriter",
    "MetricsSummaryWriter",
    "NonFiniteLossError",
    "OutputAsList",
    "RandomStates",
    "ResumableCheckpoint",
    "StopOnNonFiniteLoss",
    "TrackingReportWriter",
    "ValidationOverlays",
    "add_to_mlflow_run",
    "check_writable",
    "find_generators",
    "latest_checkpoint",
    "log_to_mlflow_run",
    "save_model_atomic",
]
