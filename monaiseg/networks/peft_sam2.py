"""BloodCellSAM2's parameter-efficient SAM2 (docs/methods.md#bloodcellsam2) and its adapter-only weights.

The model is a `SAM2Segmenter` with official keys, plus:
- LoRA on the q and k slices of `attn.qkv` in the last `lora_blocks` Hiera blocks
  (`image_encoder.trunk.blocks.<i>.attn.qkv.lora_{a,b}.<q|k>`);
- a bottleneck adapter after each MLP of the mask decoder's two-way transformer
  (`sam_mask_decoder.transformer.layers.<i>.mlp.adapter.*`);
- the cell-density prior prompt branch (`density_encoder.*`).

Foundation weights (official sam2.1 checkpoints) are loaded strictly before these parts are
added. Our checkpoints are either the full model (`{"model": state_dict}`) or only the PEFT
parts (`save_peft_weights`), which need the same foundation weights to be useful.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from monaiseg.networks.adapters import add_mlp_adapters
from monaiseg.networks.checkpoint import CheckpointMismatchError, load_state_dict_strict
from monaiseg.networks.density import DensityPromptEncoder
from monaiseg.networks.lora import add_qkv_lora
from monaiseg.networks.sam2_builder import build_sam2_segmenter, read_sam2_checkpoint
from monaiseg.networks.sam2_segmenter import SAM2Segmenter
from monaiseg.utils.config import none_if_null
from monaiseg.utils.files import atomic_outputs

# BloodCellSAM2's z-score on [0, 1] intensities
BLOODCELL_MEAN = 0.45
BLOODCELL_STD = 0.25

# freezing policies (`freeze_except` patterns): stage 1 on static images, stage 2 on videos
BLOODCELL_STAGE1_TRAINABLE = ("*.lora_*", "sam_mask_decoder.*.adapter.*", "density_encoder")
BLOODCELL_STAGE2_TRAINABLE = (*BLOODCELL_STAGE1_TRAINABLE, "memory_encoder")


def build_peft_sam2(
    size: str = "large",
    image_size: int = 1024,
    foundation_checkpoint: str | Path | None = None,
    checkpoint: str | Path | None = None,
    lora: bool = True,
    lora_rank: int = 16,
    lora_alpha: float = 32,
    lora_blocks: int = 4,
    lora_targets: Sequence[str] = ("q", "k"),
    decoder_adapters: bool = True,
    adapter_dim: int = 32,
    density_prior: bool = True,
    pixel_mean: float | Sequence[float] = BLOODCELL_MEAN,
    pixel_std: float | Sequence[float] = BLOODCELL_STD,
    device: str | torch.device = "cpu",
    multimask_output: bool = False,
) -> SAM2Segmenter:
    """BloodCellSAM2: a sam2.1 `size` SAM2Segmenter with LoRA, decoder adapters and the density
    prompt branch (each switchable; all off = plain SAM2, the full fine-tuning ablation).

    `foundation_checkpoint`: official-layout SAM2 weights loaded strictly before the PEFT parts
    are added (None: random init). `checkpoint`: one of our files, loaded strictly afterwards:
    the full PEFT model, or adapter-only weights from `save_peft_weights` (told apart by their
    keys: a file holding only PEFT keys is adapter-only). "none"/"null"/"" mean None.
    """
    model = build_sam2_segmenter(
        size, image_size, none_if_null(foundation_checkpoint), "cpu", multimask_output, pixel_mean, pixel_std
    )
    if lora:
        add_qkv_lora(model.image_encoder.trunk.blocks, lora_rank, lora_alpha, lora_targets, last_n=lora_blocks)
    if decoder_adapters:
        add_mlp_adapters(model.sam_mask_decoder, adapter_dim)
    if density_prior:
        model.density_encoder = DensityPromptEncoder(model.sam_prompt_encoder.embed_dim)
    checkpoint = none_if_null(checkpoint)
    if checkpoint is not None:
        load_peft_checkpoint(model, checkpoint)
    return model.to(device)


def is_peft_key(name: str) -> bool:
    """Whether a parameter / state-dict name belongs to LoRA, an adapter or the density branch."""
    parts = name.split(".")
    return parts[0] == "density_encoder" or "adapter" in parts or any(p.startswith("lora_") for p in parts)


def peft_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The LoRA, adapter and density-branch entries of `model.state_dict()`."""
    return {k: v for k, v in model.state_dict().items() if is_peft_key(k)}


def save_peft_weights(model: torch.nn.Module, path: str | Path) -> Path:
    """Write `{"model": peft_state_dict(model)}` to `path` atomically; returns the path."""
    with atomic_outputs(path) as (tmp,):
        torch.save({"model": peft_state_dict(model)}, tmp)
    return Path(path)


def load_peft_weights(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load adapter-only weights (weights_only), strictly on the PEFT entries of `model`:
    missing, unexpected and mis-shaped keys raise `CheckpointMismatchError` naming the file."""
    return _load_peft_state(model, read_sam2_checkpoint(path), path)


def _load_peft_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path) -> torch.nn.Module:
    foreign = [k for k in state if not is_peft_key(k)]
    if foreign:
        raise CheckpointMismatchError(
            f"adapter-only checkpoint {path} holds {len(foreign)} non-PEFT keys (e.g. {foreign[:3]}); "
            "a full model goes to `checkpoint=` of build_peft_sam2"
        )
    base = {k: v for k, v in model.state_dict().items() if not is_peft_key(k)}
    load_state_dict_strict(model, {**base, **state}, source=str(path))
    return model


def load_peft_checkpoint(model: torch.nn.Module, path: str | Path) -> torch.nn.Module:
    """Load one of our files into a PEFT model: adapter-only (every key a PEFT key) or full."""
    state = read_sam2_checkpoint(path)
    if state and all(is_peft_key(k) for k in state):
        return _load_peft_state(model, state, path)
    if not any(is_peft_key(k) for k in state) and any(is_peft_key(k) for k in model.state_dict()):
        raise CheckpointMismatchError(
            f"checkpoint {path} has no LoRA/adapter/density weights: official SAM2 weights go to "
            "`foundation_checkpoint`, `checkpoint` is for files trained with these PEFT parts"
        )
    load_state_dict_strict(model, state, source=str(path))
    return model
