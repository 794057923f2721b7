"""Metrics that MONAI lacks."""

from .segmentation import DiceScore, NormalizedSurfaceDice, label_volume_scores
