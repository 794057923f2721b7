"""Build a `SAM2Segmenter` of any sam2.1 size at any image size, with strict checkpoint loading."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from sam2.build_sam import build_sam2_video_predictor

from monaiseg.networks.checkpoint import load_state_dict_strict, read_checkpoint
from monaiseg.networks.sam2_private import has_sam2_extension
from monaiseg.networks.sam2_segmenter import IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger(__name__)

SAM2_CONFIGS = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


def build_sam2_segmenter(
    size: str = "tiny",
    image_size: int = 1024,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    multimask_output: bool = False,
    pixel_mean: float | Sequence[float] = IMAGENET_MEAN,
    pixel_std: float | Sequence[float] = IMAGENET_STD,
):
    """A `SAM2Segmenter` (sam2.1 `size` in tiny/small/base_plus/large) for `image_size` inputs.

    `checkpoint`: an official `{'model': state_dict}` file (sam2.1_hiera_*.pt, MedSAM2_latest.pt,
    or one of ours), loaded with `weights_only=True` and strict keys; `None` (or "none"/"null"/"",
    since the bundle CLI cannot pass None): random init. `pixel_mean` / `pixel_std`: input
    normalisation of [0, 1] intensities, one value or three (default ImageNet, as SAM2).
    """
    if isinstance(checkpoint, str) and checkpoint.strip().lower() in ("", "none", "null"):
        checkpoint = None
    if size not in SAM2_CONFIGS:
        raise ValueError(f"unknown SAM2 size {size!r}; choose one of {sorted(SAM2_CONFIGS)}")
    if image_size % 32:
        raise ValueError(f"SAM2 image_size must be a multiple of 32, got {image_size}")
    feat = image_size // 16
    overrides = [
        "++model._target_=monaiseg.networks.sam2_segmenter.SAM2Segmenter",
        f"++model.image_size={image_size}",
        f"++model.memory_attention.layer.self_attention.feat_sizes=[{feat},{feat}]",
        f"++model.memory_attention.layer.cross_attention.feat_sizes=[{feat},{feat}]",
    ]
    model = build_sam2_video_predictor(
        SAM2_CONFIGS[size], ckpt_path=None, device="cpu", hydra_overrides_extra=overrides
    )
    if not has_sam2_extension():  # sam2 skips hole filling without its CUDA extension anyway (same masks)
        model.fill_hole_area = 0
    model.multimask_output = multimask_output
    model.set_normalization(pixel_mean, pixel_std)
    if checkpoint is None:
        logger.warning("SAM2 %s built with RANDOM weights (checkpoint is null): for tests and smoke runs only", size)
    else:
        load_sam2_checkpoint(model, checkpoint)
    return model.to(device)


def load_sam2_checkpoint(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load an official-layout `{'model': state_dict}` SAM2 checkpoint strictly (weights_only)."""
    load_state_dict_strict(model, read_sam2_checkpoint(path), source=str(path))
    return model


def read_sam2_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a `{'model': state_dict}` SAM2 file (see `read_checkpoint`)."""
    return read_checkpoint(path, "SAM2")
