"""Transforms that MONAI lacks."""

from .intensity import CheckImaged, CTWindow, CTWindowd, MRPercentileNormalize, MRPercentileNormalized
from .prompts import (
    KeySlicePromptsd,
    LoadPromptsd,
    RandBoxPromptd,
    RandClipd,
    RequirePromptsd,
    key_slice,
    mask_box,
    read_prompt_file,
)
from .video import LoadVideod, SaveMaskFramesd
