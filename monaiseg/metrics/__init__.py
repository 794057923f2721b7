"""Metrics that MONAI lacks."""

from .cells import BoundaryF1Metric, boundary_f1, cell_type_scores, segmentation_fps, write_cell_type_scores
from .segmentation import DiceScore, NormalizedSurfaceDice, label_volume_scores
