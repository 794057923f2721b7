"""Transforms that MONAI lacks."""

from .cells import CLAHE, CheckMaskValuesd, CLAHEd, DensityMapd, LoadCTCd, RandCellTracksd, RandElasticd
from .intensity import CheckImaged, CTWindow, CTWindowd, MRPercentileNormalize, MRPercentileNormalized
from .prompts import (
    InstanceBoxesd,
    KeySlicePromptsd,
    LoadBoxesd,
    LoadPromptsd,
    RandBoxPromptd,
    RandClipd,
    RequirePromptsd,
    key_slice,
    mask_box,
    read_prompt_file,
)
from .medsam import BoxPromptsd, SliceMinMaxd
from .overlay import SaveOverlayd
from .video import LoadVideod, SaveMaskFramesd, SaveTracksd
