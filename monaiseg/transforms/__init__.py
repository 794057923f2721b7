"""Transforms that MONAI lacks: intensity, input checks, cell images, click simulation, prompts, video I/O."""

from .cells import CLAHE, CLAHEd, DensityMapd, LoadCTCd, RandCellTracksd, RandElasticd
from .checks import CheckImaged, CheckMaskValuesd
from .clicks import jittered_box, jittered_boxes, sample_error_clicks, sample_foreground_clicks
from .intensity import CTWindow, CTWindowd, MRPercentileNormalize, MRPercentileNormalized
from .medsam import BoxPromptsd, SliceMinMaxd
from .overlay import SaveOverlayd
from .prompts import (
    InstanceBoxesd,
    KeySlicePromptsd,
    LoadBoxesd,
    LoadPromptsd,
    RandBoxPromptd,
    RandClipd,
    RequirePromptsd,
)
from .video import LoadVideod, SaveMaskFramesd, SaveTracksd
