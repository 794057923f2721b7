"""Losses of the BloodCellSAM2 bundle (METHODS.md §1): L = L_seg + L_temp + L_mor."""

from .bloodcell import BloodCellLoss
from .curvature import ContourCurvatureLoss
from .temporal import TemporalContrastiveLoss

__all__ = ["BloodCellLoss", "ContourCurvatureLoss", "TemporalContrastiveLoss"]
