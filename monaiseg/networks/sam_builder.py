"""Build a `SAMSegmenter` (SAM ViT-B/L/H, MedSAM, SAM-Med2D) of any size at any image size,
with strict loading of the official checkpoints.

Layouts read (`torch.load(weights_only=True)` only): a flat state dict (sam_vit_*.pth,
medsam_vit_b.pth) or `{'model': state_dict, ...}` (SAM-Med2D, ours). 1024-trained weights load at
another image size by resizing `image_encoder.pos_embed` over the token grid and the relative
position tables of the global-attention blocks along the position axis, as SAMed / SAM-Med2D do
(`resize_sam_state_dict`). The released `sam-med2d_b.pth` also pickles an optimizer object, which
a weights-only load refuses: convert it once with `extract_sam_med2d_weights(..., trust=True)`.
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import TypedDict

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer

from monaiseg.networks.checkpoint import CheckpointMismatchError, load_state_dict_strict, read_checkpoint
from monaiseg.networks.sam2_segmenter import IMAGENET_MEAN, IMAGENET_STD
from monaiseg.networks.sam_segmenter import SAMSegmenter, add_sam_med2d_adapters
from monaiseg.utils.config import none_if_null
from monaiseg.utils.files import atomic_outputs

logger = logging.getLogger(__name__)


class SAMVariant(TypedDict):
    """One entry of `SAM_VARIANTS`: the ViT image encoder of a SAM model size."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]


# segment-anything's build_sam.py: embed dim, depth, heads, global-attention blocks
SAM_VARIANTS: dict[str, SAMVariant] = {
    "vit_b": {"embed_dim": 768, "depth": 12, "num_heads": 12, "global_attn_indexes": (2, 5, 8, 11)},
    "vit_l": {"embed_dim": 1024, "depth": 24, "num_heads": 16, "global_attn_indexes": (5, 11, 17, 23)},
    "vit_h": {"embed_dim": 1280, "depth": 32, "num_heads": 16, "global_attn_indexes": (7, 15, 23, 31)},
}
PATCH_SIZE = 16
PROMPT_DIM = 256
ADAPTER_KEY = ".Adapter."


def default_global_attn_indexes(depth: int) -> tuple[int, ...]:
    """The last block of each quarter of the encoder, (2, 5, 8, 11) for depth 12; this gives the
    official indexes of ViT-B/L/H, and e.g. (0, 1) at depth 2 or (0, 1, 2) at depth 3."""
    return tuple(sorted({(q + 1) * depth // 4 - 1 for q in range(4)} - {-1}))


def sam_prompt_encoder_and_decoder(image_size: int, embedding_size: int) -> tuple[PromptEncoder, MaskDecoder]:
    """segment-anything's prompt encoder and mask decoder as every SAM size builds them (256 channels, a
    two-block two-way transformer, 3 multimask outputs + 1) for square `image_size` inputs and an
    (`embedding_size`, `embedding_size`) image embedding."""
    prompt_encoder = PromptEncoder(
        embed_dim=PROMPT_DIM,
        image_embedding_size=(embedding_size, embedding_size),
        input_image_size=(image_size, image_size),
        mask_in_chans=16,
    )
    mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=PROMPT_DIM, mlp_dim=2048, num_heads=8),
        transformer_dim=PROMPT_DIM,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
    )
    return prompt_encoder, mask_decoder


def build_sam_segmenter(
    variant: str = "vit_b",
    image_size: int = 1024,
    checkpoint: str | Path | None = None,
    encoder_adapter: bool = False,
    device: str | torch.device = "cpu",
    pixel_mean: float | Sequence[float] = IMAGENET_MEAN,
    pixel_std: float | Sequence[float] = IMAGENET_STD,
    multimask_output: bool = False,
    encoder_depth: int | None = None,
    encoder_embed_dim: int | None = None,
    encoder_num_heads: int | None = None,
    encoder_global_attn_indexes: Sequence[int] | None = None,
) -> SAMSegmenter:
    """A `SAMSegmenter` (`variant` vit_b / vit_l / vit_h) for `image_size` inputs (a multiple of 16).

    `encoder_adapter`: SAM-Med2D (adapters in every encoder block; its release is vit_b at 256).
    `checkpoint`: an official or own file (see `load_sam_checkpoint`); None or "none"/"null"/""
    (the bundle CLI cannot pass None): random weights, with a warning. `pixel_mean` / `pixel_std`:
    normalisation of [0, 1] intensities, one value or (R, G, B): ImageNet for SAM and SAM-Med2D,
    0 / 1 for MedSAM. `encoder_*`: override the variant's ViT (tiny models for tests); global
    attention defaults to the variant's blocks, or `default_global_attn_indexes(depth)` when the
    depth is overridden. The model is built directly on `device` ("meta": no memory at all).
    """
    if variant not in SAM_VARIANTS:
        raise ValueError(f"unknown SAM variant {variant!r}; choose one of {sorted(SAM_VARIANTS)}")
    if image_size <= 0 or image_size % PATCH_SIZE:
        raise ValueError(f"SAM image_size must be a positive multiple of {PATCH_SIZE}, got {image_size}")
    spec = SAM_VARIANTS[variant]
    depth = encoder_depth or spec["depth"]
    embed_dim = encoder_embed_dim or spec["embed_dim"]
    num_heads = encoder_num_heads or spec["num_heads"]
    if encoder_global_attn_indexes is not None:
        global_attn = tuple(encoder_global_attn_indexes)
    else:
        global_attn = spec["global_attn_indexes"] if depth == spec["depth"] else default_global_attn_indexes(depth)
    if embed_dim % num_heads:
        raise ValueError(f"encoder_embed_dim {embed_dim} is not divisible by {num_heads} heads; set encoder_num_heads")
    if any(not 0 <= i < depth for i in global_attn):
        raise ValueError(f"global attention blocks {list(global_attn)} must lie in 0..{depth - 1}")
    tokens = image_size // PATCH_SIZE
    with torch.device(device):  # the large modules are initialised on `device` directly
        image_encoder = ImageEncoderViT(
            img_size=image_size,
            patch_size=PATCH_SIZE,
            embed_dim=embed_dim,
            depth=depth,
            num_heads=num_heads,
            mlp_ratio=4,
            out_chans=PROMPT_DIM,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=14,
            global_attn_indexes=global_attn,
        )
        if encoder_adapter:
            add_sam_med2d_adapters(image_encoder)
        prompt_encoder, mask_decoder = sam_prompt_encoder_and_decoder(image_size, tokens)
    model = SAMSegmenter(image_encoder, prompt_encoder, mask_decoder, pixel_mean=pixel_mean, pixel_std=pixel_std)
    model.multimask_output = multimask_output
    checkpoint = none_if_null(checkpoint)
    name = f"SAM-Med2D {variant}" if encoder_adapter else f"SAM {variant}"
    if checkpoint is None:
        logger.warning("%s built with RANDOM weights (checkpoint is null): for tests and smoke runs only", name)
    else:
        load_sam_checkpoint(model, checkpoint)
    return model.to(device).eval()


def read_sam_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a SAM-family file: flat, or under 'model'; read with weights_only=True.
    Clear errors naming the file when it is absent, not weights-only (SAM-Med2D's release:
    use `extract_sam_med2d_weights`), unreadable, or holds no state dict."""
    path = Path(path)
    if not path.is_file():
        read_checkpoint(path, "SAM")  # raises FileNotFoundError with the download / training hint
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = re.search(r"GLOBAL (\S+) was not an allowed global", str(exc))
        if refused is None:  # not a pickled object: a damaged or foreign file
            raise ValueError(f"SAM checkpoint {path} cannot be read as a torch file: {exc}") from exc
        raise ValueError(
            f"SAM checkpoint {path} pickles a Python object ({refused.group(1)}), so it cannot be loaded with "
            "weights_only=True (the released SAM-Med2D sam-med2d_b.pth pickles its whole optimizer next to the "
            "weights). If you trust the file, convert it once with "
            f"`python scripts/convert_sam_med2d.py {path} <new .pth> --trust` (or "
            f"monaiseg.networks.extract_sam_med2d_weights({str(path)!r}, <new .pth>, trust=True)) and use the new file."
        ) from exc
    except Exception as exc:
        raise ValueError(f"SAM checkpoint {path} cannot be read as a torch file: {exc}") from exc
    state = content.get("model", content) if isinstance(content, dict) else content
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        found = list(content)[:5] if isinstance(content, dict) else type(content).__name__
        raise ValueError(
            f"SAM checkpoint {path} holds neither a flat state dict nor {{'model': state_dict}} (found {found})"
        )
    return state


def resize_sam_state_dict(
    state_dict: Mapping[str, torch.Tensor], model: SAMSegmenter, pos_embed_mode: str = "bilinear"
) -> dict[str, torch.Tensor]:
    """`state_dict` with the image-size-dependent tensors resized to `model`'s shapes.

    `image_encoder.pos_embed` (1, T, T, C) -> (1, T', T', C) over the token grid
    (`pos_embed_mode`, align_corners=False; SAMed / SAM-Med2D use bilinear) and
    `rel_pos_h/w` (2T-1, head_dim) -> (2T'-1, head_dim) of the global-attention blocks, linearly
    along the position axis. Windowed blocks keep theirs (their length is set by the window).
    Tensors whose other dimensions differ are left as they are for the strict load to report.
    """
    target = model.state_dict()
    out = dict(state_dict)
    key = "image_encoder.pos_embed"
    src, dst = out.get(key), target.get(key)
    if (
        src is not None
        and dst is not None
        and src.ndim == 4
        and src.shape[-1] == dst.shape[-1]
        and src.shape != dst.shape
    ):
        grid = F.interpolate(
            src.permute(0, 3, 1, 2).float(), size=tuple(dst.shape[1:3]), mode=pos_embed_mode, align_corners=False
        )
        out[key] = grid.permute(0, 2, 3, 1).to(src.dtype)
        logger.info("resized %s from %s to %s", key, tuple(src.shape), tuple(dst.shape))
    for i, block in enumerate(model.image_encoder.blocks):
        if block.window_size:
            continue
        for axis in ("h", "w"):
            key = f"image_encoder.blocks.{i}.attn.rel_pos_{axis}"
            src, dst = out.get(key), target.get(key)
            if (
                src is None
                or dst is None
                or src.ndim != 2
                or src.shape[1] != dst.shape[1]
                or src.shape[0] == dst.shape[0]
            ):
                continue
            table = F.interpolate(src.T[None].float(), size=dst.shape[0], mode="linear", align_corners=False)
            out[key] = table[0].T.to(src.dtype)
            logger.info("resized %s from %s to %s", key, tuple(src.shape), tuple(dst.shape))
    return out


def _adapter_hint(model: SAMSegmenter, state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which model the file is for, when it and the model disagree on SAM-Med2D's adapters."""
    model_has = any(ADAPTER_KEY in k for k in model.state_dict())
    file_has = any(ADAPTER_KEY in k for k in state_dict)
    if model_has and not file_has:
        return (
            "The model is SAM-Med2D (an adapter in every encoder block, encoder_adapter=True) and expects a "
            "SAM-Med2D checkpoint (sam-med2d_b.pth converted by extract_sam_med2d_weights), but the file has "
            "no image_encoder.blocks.<i>.Adapter.* keys: it looks like a plain SAM / MedSAM checkpoint "
            "(load those with encoder_adapter=False)."
        )
    if file_has and not model_has:
        return (
            "The file is a SAM-Med2D checkpoint (image_encoder.blocks.<i>.Adapter.* keys): "
            "build the model with encoder_adapter=True (SAM-Med2D: vit_b, image_size 256)."
        )
    return ""


def load_sam_checkpoint(model: SAMSegmenter, path: str | Path) -> SAMSegmenter:
    """Load a SAM-family file (`read_sam_checkpoint`) strictly into `model`, resized to its image
    size (`resize_sam_state_dict`); `CheckpointMismatchError` names the file, the missing /
    unexpected keys and shape mismatches (and SAM vs SAM-Med2D when the adapters disagree)."""
    state = resize_sam_state_dict(read_sam_checkpoint(path), model)
    try:
        load_state_dict_strict(model, state, source=str(path))
    except CheckpointMismatchError as exc:
        hint = _adapter_hint(model, state)
        if not hint:
            raise
        raise CheckpointMismatchError(f"{exc}\n  {hint}") from None
    return model


def extract_sam_med2d_weights(src: str | Path, dst: str | Path, trust: bool = False) -> Path:
    """Write the weights of a file that weights_only=True refuses (SAM-Med2D's release, which
    pickles its optimizer) as `{'model': state_dict}` of plain CPU tensors to `dst`, atomically.

    Reading `src` unpickles arbitrary objects (weights_only=False), which can run code from the
    file: this happens only with `trust=True`, for a file from a source you trust.
    """
    src, dst = Path(src), Path(dst)
    if not trust:
        raise ValueError(
            f"extract_sam_med2d_weights reads {src} with weights_only=False, which can execute code stored in "
            "the file; call it with trust=True only for a file from a trusted source"
            " (e.g. the official sam-med2d_b.pth)"
        )
    if not src.is_file():
        raise FileNotFoundError(f"SAM-Med2D checkpoint {src} not found")
    content = torch.load(src, map_location="cpu", weights_only=False)
    state = content.get("model", content) if isinstance(content, dict) else content
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items())
    ):
        raise ValueError(f"{src} holds no state dict (flat or under 'model')")
    plain = {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in state.items()}
    with atomic_outputs(dst) as (tmp,):
        torch.save({"model": plain}, tmp)
    logger.info("wrote %d tensors of %s to %s", len(plain), src, dst)
    return dst
