"""Metrics that MONAI lacks."""

from .cells import BoundaryF1Metric, boundary_f1, cell_type_scores, segmentation_fps, write_cell_type_scores
from .classification import classification_metrics, write_classification_report
from .endovis import EndoVisIoU, FrameScore, endovis_frame_score, endovis_metrics
from .organs import OrganMetrics, organ_scores, organ_table
from .segmentation import DiceScore, NormalizedSurfaceDice, binary_dice, label_volume_scores
from .tracking import tracking_accuracy

__all__ = [
    "BoundaryF1Metric",
    "DiceScore",
    "EndoVisIoU",
    "FrameScore",
    "NormalizedSurfaceDice",
    "OrganMetrics",
    "binary_dice",
    "boundary_f1",
    "cell_type_scores",
    "classification_metrics",
    "endovis_frame_score",
    "endovis_metrics",
    "label_volume_scores",
    "organ_scores",
    "organ_table",
    "segmentation_fps",
    "tracking_accuracy",
    "write_cell_type_scores",
    "write_classification_report",
]
