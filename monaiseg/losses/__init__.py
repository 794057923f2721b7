"""Losses MONAI lacks: BloodCellSAM2 (docs/methods.md#bloodcellsam2: L = L_seg + L_temp + L_mor) and SAM-Med2D's
20 x focal + Dice + IoU-prediction MSE; SurgicalSAM's contrastive prototype loss (InfoNCE)."""

from .bloodcell import BloodCellLoss
from .curvature import ContourCurvatureLoss
from .sam_med2d import SAMMed2DLoss
from .surgical_sam import ClassPromptLoss, PrototypeContrastiveLoss
from .temporal import TemporalContrastiveLoss

__all__ = [
    "BloodCellLoss",
    "ClassPromptLoss",
    "ContourCurvatureLoss",
    "PrototypeContrastiveLoss",
    "SAMMed2DLoss",
    "TemporalContrastiveLoss",
]
