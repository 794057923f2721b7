"""Build a `SAM2Segmenter` of any sam2.1 size at any image size, with strict checkpoint loading."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from sam2.build_sam import build_sam2_video_predictor

from .checkpoint import load_state_dict_strict

logger = logging.getLogger(__name__)

SAM2_CONFIGS = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}


def _has_sam2_extension() -> bool:
    try:
        from sam2 import _C  # noqa: F401
    except ImportError:
        return False
    return True


def build_sam2_segmenter(
    size: str = "tiny",
    image_size: int = 1024,
    checkpoint: str | Path | None = None,
    device: str | torch.device = "cpu",
    multimask_output: bool = False,
):
    """A `SAM2Segmenter` (sam2.1 `size` in tiny/small/base_plus/large) for `image_size` inputs.

    `checkpoint`: an official `{'model': state_dict}` file (sam2.1_hiera_*.pt, MedSAM2_latest.pt,
    or one of ours), loaded with `weights_only=True` and strict keys; `None` (or "none"/"null"/"",
    since the bundle CLI cannot pass None): random init.
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
    model = build_sam2_video_predictor(SAM2_CONFIGS[size], ckpt_path=None, device="cpu", hydra_overrides_extra=overrides)
    if not _has_sam2_extension():  # sam2 skips hole filling without its CUDA extension anyway (same masks)
        model.fill_hole_area = 0
    model.multimask_output = multimask_output
    if checkpoint is None:
        logger.warning("SAM2 %s built with RANDOM weights (checkpoint is null): for tests and smoke runs only", size)
    else:
        load_sam2_checkpoint(model, checkpoint)
    return model.to(device)


def load_sam2_checkpoint(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load an official-layout `{'model': state_dict}` SAM2 checkpoint strictly (weights_only)."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.name == "model.pt":
            hint = "; train the bundle first (configs/train.json) or set `checkpoint` to a released model"
        elif path.parent.name == "models":
            hint = f"; fetch it with: python -m monai.bundle download_large_files --bundle_path {path.parent.parent}"
        raise FileNotFoundError(f"SAM2 checkpoint {path} not found{hint}")
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"SAM2 checkpoint {path} cannot be read as a weights-only torch file: {exc}") from exc
    if not isinstance(content, dict) or not isinstance(content.get("model"), dict):
        keys = list(content)[:5] if isinstance(content, dict) else type(content).__name__
        raise ValueError(f"SAM2 checkpoint {path} is not in the official {{'model': state_dict}} layout (found {keys})")
    load_state_dict_strict(model, content["model"], source=str(path))
    return model
