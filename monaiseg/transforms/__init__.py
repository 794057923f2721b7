"""Transforms that MONAI lacks: intensity, input checks, cell images, click simulation, prompts, video I/O."""

from .cells import CLAHE, CLAHEd, DensityMapd, LoadCTCd, RandCellTracksd, RandElasticd
from .checks import CheckImaged, CheckMaskValuesd
from .clicks import jittered_box, jittered_boxes, sample_error_clicks, sample_foreground_clicks
from .intensity import CTWindow, CTWindowd, MRPercentileNormalize, MRPercentileNormalized
from .medsam import BoxPromptsd, Letterbox, Letterboxd, LoadChallengeNpzd, SaveChallengeNpzd, SliceMinMaxd
from .object_masks import SaveObjectMasksd
from .overlay import SaveOverlayd
from .prompts import (
    InstanceBoxesd,
    InstanceLabelsd,
    KeySlicePromptsd,
    LoadBoxesd,
    LoadPromptsd,
    RandBoxPromptd,
    RandClipd,
    ReadObjectPromptsd,
    RequirePromptsd,
)
from .video import LoadVideod, SaveMaskFramesd, SaveTracksd

__all__ = [
    "BoxPromptsd",
    "CLAHE",
    "CLAHEd",
    "CTWindow",
    "CTWindowd",
    "CheckImaged",
    "CheckMaskValuesd",
    "DensityMapd",
    "InstanceBoxesd",
    "InstanceLabelsd",
    "KeySlicePromptsd",
    "Letterbox",
    "Letterboxd",
    "LoadChallengeNpzd",
    "LoadBoxesd",
    "LoadCTCd",
    "LoadPromptsd",
    "LoadVideod",
    "MRPercentileNormalize",
    "MRPercentileNormalized",
    "RandBoxPromptd",
    "ReadObjectPromptsd",
    "RandCellTracksd",
    "RandClipd",
    "RandElasticd",
    "RequirePromptsd",
    "SaveChallengeNpzd",
    "SaveMaskFramesd",
    "SaveObjectMasksd",
    "SaveOverlayd",
    "SaveTracksd",
    "SliceMinMaxd",
    "jittered_box",
    "jittered_boxes",
    "sample_error_clicks",
    "sample_foreground_clicks",
]
