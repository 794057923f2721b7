"""HF-SAM (docs/methods.md#hf-sam): few-shot, prompt-free multi-class SAM with LoRA, AWFFM and two-step
skip-feature fusion decoding.

- Image encoder: SAM ViT, frozen, with LoRA on the q and v slices of every block's fused qkv
  (`FusedQKVLoRA`, alpha = rank: SAMed adds B A x without scaling).
- Step 1 (SAMed's decoder): SAM's mask decoder with K = num_classes + 1 mask tokens and no
  prompt (the "no mask" dense embedding only); its image features after the two-way transformer
  are fused by `AWFFM` with the output of an early encoder block (default: the first
  global-attention block) before upscaling -> logits1 (B, K, S/4, S/4).
- Step 2 (`SkipFusionDecoder`): the image embedding re-weighted by step 1's class probabilities,
  a second two-way transformer, its upscaled features concatenated with step 1's (the skip
  feature) and upsampled twice more -> logits2 (B, K, S, S). HF-SAM's code builds this stage
  (`mask_decoder2`) but never calls it; here both steps run.

`use_awffm=False` and `decoding_steps=1` remove the modules (no parameters) and take exactly the
plain path: with both off the network is SAMed. `forward` gives softmax logits (B, K, H, W) at the
input size; in training mode it gives the native-resolution logits of every step, final first
([logits2, logits1] or [logits1]), for `monai.losses.DeepSupervisionLoss` (labels resized by nearest,
SAMed's low-res label).

Checkpoints: ours `{'model': state_dict}` (full, or adapter-only from `hf_sam_adapter_state_dict`
on top of the foundation weights) and SAMed / HF-SAM LoRA files (`w_a_*` / `w_b_*` + prompt
encoder and decoder keys) through `upstream_key_map`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, TwoWayTransformer
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.mask_decoder import MLP
from torch import nn

from monaiseg.networks.awffm import AWFFM
from monaiseg.networks.checkpoint import CheckpointMismatchError, load_state_dict_strict
from monaiseg.networks.lora import add_qkv_lora
from monaiseg.networks.sam_builder import build_sam_segmenter, read_sam_checkpoint
from monaiseg.networks.sam_segmenter import SAMSegmenter
from monaiseg.networks.trainable import freeze_except
from monaiseg.utils.batch import unwrap_model
from monaiseg.utils.config import as_bool, none_if_null, silenced

logger = logging.getLogger(__name__)

HF_SAM_TRAINABLE = ("*.lora_*", "prompt_encoder", "mask_decoder", "awffm", "skip_decoder")
_LORA_FILE_KEY = re.compile(r"w_([ab])_(\d+)$")
# HF-SAM modules that exist in its files but take no part in its forward pass
_UNUSED_UPSTREAM = (
    "mask_decoder.hf_token.",
    "mask_decoder.hf_mlp.",
    "mask_decoder.embedding_encoder.",
    "mask_decoder.embedding_maskfeature.",
    "prompt_encoder2.",
    "mask_decoder2.",
)
_AWFFM_KEYS = {
    "mask_decoder.compress_vit_feat.0.": "awffm.compress.",
    "mask_decoder.Att.conv.": "awffm.fuse.",
    "mask_decoder.Att.spa.conv1.": "awffm.spatial.conv.",
    "mask_decoder.Att.cha.fc1.": "awffm.channel.mlp.0.",
    "mask_decoder.Att.cha.fc2.": "awffm.channel.mlp.2.",
}
_AWFFM_ZERO_BIAS = ("awffm.spatial.conv.bias", "awffm.channel.mlp.0.bias", "awffm.channel.mlp.2.bias")


class SkipFusionDecoder(nn.Module):
    """Second decoding step: image embedding (B, C, h, w) + positional encoding (B, C, h, w),
    step-1 logits (B, K, 4h, 4w), upscaled features (B, C/8, 4h, 4w) and mask-token outputs
    (B, K, C) -> logits (B, K, 16h, 16w).

    gate = sigmoid(prior(softmax(avgpool(logits1)))) (B, 1, h, w); the embedding becomes
    e * (1 + gate); tokens = own mask tokens + step-1 tokens; a two-way transformer; its features
    are upscaled x4 (C/8 channels), concatenated with step 1's (skip) and upscaled x4 again to C/16
    channels; one hypernetwork MLP per class gives the mask weights.
    """

    def __init__(self, num_mask_tokens: int, transformer_dim: int = 256):
        super().__init__()
        dim = transformer_dim
        self.prior = nn.Conv2d(num_mask_tokens, 1, kernel_size=1)
        self.transformer = TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=2048, num_heads=8)
        self.mask_tokens = nn.Embedding(num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.skip_connect = nn.Sequential(
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            LayerNorm2d(dim // 8),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 8, dim // 16, kernel_size=2, stride=2),
            LayerNorm2d(dim // 16),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 16, 3) for _ in range(num_mask_tokens))

    def forward(
        self,
        src: torch.Tensor,
        pos: torch.Tensor,
        logits1: torch.Tensor,
        upscaled1: torch.Tensor,
        tokens1: torch.Tensor,
    ) -> torch.Tensor:
        b, c, h, w = src.shape
        gate = torch.sigmoid(self.prior(torch.softmax(F.adaptive_avg_pool2d(logits1, (h, w)), dim=1)))
        tokens = self.mask_tokens.weight.unsqueeze(0) + tokens1
        hs, feats = self.transformer(src * (1 + gate), pos, tokens)
        feats = feats.transpose(1, 2).reshape(b, c, h, w)
        fused = self.skip_connect(torch.cat([self.output_upscaling(feats), upscaled1], dim=1))
        hyper = torch.stack([mlp(hs[:, k]) for k, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1)
        return (hyper @ fused.flatten(2)).view(b, -1, *fused.shape[-2:])


class HFSAM(SAMSegmenter):
    """SAM with LoRA, prompt-free K-class decoding, optional `awffm` and `skip_decoder` (see module)."""

    def __init__(
        self,
        image_encoder: ImageEncoderViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        awffm: AWFFM | None = None,
        awffm_block: int | None = None,
        skip_decoder: SkipFusionDecoder | None = None,
        pixel_mean=0.0,
        pixel_std=1.0,
    ):
        super().__init__(image_encoder, prompt_encoder, mask_decoder, pixel_mean, pixel_std)
        if awffm is not None and awffm_block not in range(len(image_encoder.blocks)):
            raise ValueError(
                f"awffm_block must be an encoder block index in 0..{len(image_encoder.blocks) - 1}, got {awffm_block}"
            )
        self.awffm, self.awffm_block, self.skip_decoder = awffm, awffm_block, skip_decoder

    @property
    def num_outputs(self) -> int:
        """K: background + classes."""
        return self.mask_decoder.num_mask_tokens

    def encode_features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images (B, 1|3, H, W) in [0, 1] -> image embedding (B, 256, S/16, S/16) and the output of
        block `awffm_block` (B, C_vit, S/16, S/16) (None without AWFFM)."""
        encoder = self.image_encoder
        x = encoder.patch_embed(self.normalize_images(images))
        if encoder.pos_embed is not None:
            x = x + encoder.pos_embed
        low = None
        for i, block in enumerate(encoder.blocks):
            x = block(x)
            if self.awffm is not None and i == self.awffm_block:
                low = x.permute(0, 3, 1, 2)
        return encoder.neck(x.permute(0, 3, 1, 2)), low

    def decode_steps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Logits of every decoding step at its own resolution, final first:
        [(B, K, S, S), (B, K, S/4, S/4)] with two steps, [(B, K, S/4, S/4)] with one."""
        embeddings, low = self.encode_features(images)
        batch, dim, h, w = embeddings.shape
        decoder = self.mask_decoder
        sparse, dense = self.prompt_encoder(points=None, boxes=None, masks=None)  # (1, 0, C), (1, C, h, w)
        tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        tokens = torch.cat([tokens.unsqueeze(0).expand(batch, -1, -1), sparse.expand(batch, -1, -1)], dim=1)
        src = embeddings + dense
        pos = self.prompt_encoder.get_dense_pe().expand(batch, -1, -1, -1)
        hs, feats = decoder.transformer(src, pos, tokens)
        feats = feats.transpose(1, 2).reshape(batch, dim, h, w)
        if self.awffm is not None:
            feats = self.awffm(low, feats)
        upscaled = decoder.output_upscaling(feats)
        mask_tokens = hs[:, 1 : 1 + self.num_outputs]
        hyper = torch.stack([mlp(mask_tokens[:, k]) for k, mlp in enumerate(decoder.output_hypernetworks_mlps)], 1)
        logits1 = (hyper @ upscaled.flatten(2)).view(batch, -1, *upscaled.shape[-2:])
        if self.skip_decoder is None:
            return [logits1]
        return [self.skip_decoder(src, pos, logits1, upscaled, mask_tokens), logits1]

    def forward(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:  # type: ignore[override]
        """Images (B, 1|3, H, W) in [0, 1] -> class logits (B, K, H, W), channel 0 background;
        in training mode the list of `decode_steps`."""
        images = images.as_tensor() if isinstance(images, MetaTensor) else images
        steps = self.decode_steps(images)
        if self.training:
            return steps
        return F.interpolate(steps[0], size=images.shape[-2:], mode="bilinear", align_corners=False)


def hf_sam_adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Everything but the frozen foundation encoder: LoRA, prompt encoder, decoders, AWFFM."""
    model = unwrap_model(model)
    return {k: v for k, v in model.state_dict().items() if not k.startswith("image_encoder.") or ".lora_" in k}


def upstream_key_map(keys: Sequence[str], model: HFSAM) -> dict[str, str | None]:
    """SAMed / HF-SAM file key -> our key (None: deliberately ignored).

    LoRA `w_{a,b}_{i:03d}`: block i // 2, q (even i) or v (odd i); `prompt_encoder.*`,
    `mask_decoder.*`: the same key; HF-SAM's `mask_decoder.compress_vit_feat` / `Att`: `awffm.*`.
    Ignored: HF-SAM's modules that its forward pass never uses (`hf_token`, `hf_mlp`,
    `embedding_encoder`, `embedding_maskfeature`, the alias `prompt_encoder2`, the never-called
    `mask_decoder2`, whose weights therefore stay at their initialisation), the extra point
    embeddings (unused without prompts), and the AWFFM keys when the model has no AWFFM.
    ValueError names the keys that have no place in the model.
    """
    ours = model.state_dict()
    mapping: dict[str, str | None] = {}
    unknown = []
    for key in keys:
        lora = _LORA_FILE_KEY.fullmatch(key)
        if lora:
            index = int(lora.group(2))
            mapping[key] = f"image_encoder.blocks.{index // 2}.attn.qkv.lora_{lora.group(1)}.{'qv'[index % 2]}"
        elif key.startswith(_UNUSED_UPSTREAM) or (
            key.startswith("prompt_encoder.point_embeddings.") and key not in ours
        ):
            mapping[key] = None
        elif any(key.startswith(p) for p in _AWFFM_KEYS):
            prefix = next(p for p in _AWFFM_KEYS if key.startswith(p))
            mapping[key] = _AWFFM_KEYS[prefix] + key[len(prefix) :] if model.awffm is not None else None
        elif key.startswith(("prompt_encoder.", "mask_decoder.")):
            mapping[key] = key
        else:
            unknown.append(key)
        if mapping.get(key) is not None and mapping[key] not in ours:
            unknown.append(key)
    if unknown:
        raise ValueError(f"keys with no place in HF-SAM ({len(unknown)}): {', '.join(unknown[:8])}")
    return mapping


def load_upstream_lora_state_dict(model: HFSAM, state: Mapping[str, torch.Tensor], source: str) -> list[str]:
    """Load a SAMed / HF-SAM LoRA state dict into `model` (base encoder weights stay as they are).
    Every LoRA slice, prompt-encoder and mask-decoder tensor of the model must be in the file with
    our shapes; a CheckpointMismatchError naming `source` lists what is missing or misshaped (and the
    rank the file was trained with). Returns the model keys left untouched by the file."""
    try:
        mapping = upstream_key_map(list(state), model)
    except ValueError as exc:
        raise CheckpointMismatchError(f"checkpoint {source}: {exc}") from None
    ours = model.state_dict()
    mapped = {ours_key: state[key] for key, ours_key in mapping.items() if ours_key is not None}
    if any(k.startswith("awffm.") for k in mapped):
        mapped.update({k: torch.zeros_like(ours[k]) for k in _AWFFM_ZERO_BIAS})
    required = [k for k in ours if ".lora_" in k or k.startswith(("prompt_encoder.", "mask_decoder."))]
    missing = [k for k in required if k not in mapped]
    wrong = [f"{k} {tuple(v.shape)} != {tuple(ours[k].shape)}" for k, v in mapped.items() if v.shape != ours[k].shape]
    if missing or wrong:
        message = f"checkpoint {source} (SAMed / HF-SAM LoRA layout) does not match HF-SAM:"
        if missing:
            message += f"\n  missing ({len(missing)}): {', '.join(missing[:8])}"
        if wrong:
            message += f"\n  shape mismatches ({len(wrong)}): {', '.join(wrong[:8])}"
        rank = next((v.shape[0] for k, v in state.items() if k.startswith("w_a_")), None)
        lora = next((m for m in model.modules() if hasattr(m, "lora_a")), None)
        if rank is not None and lora is not None and rank != lora.rank:
            message += f"\n  the file has LoRA rank {rank}, the model {lora.rank}: set lora_rank {rank}"
        raise CheckpointMismatchError(message)
    model.load_state_dict(mapped, strict=False)
    return [k for k in ours if k not in mapped]


def load_hf_sam_checkpoint(model: HFSAM, state: Mapping[str, torch.Tensor], source: str) -> HFSAM:
    """Load ours (full, or `hf_sam_adapter_state_dict` keys) strictly, or a SAMed / HF-SAM file."""
    if any(_LORA_FILE_KEY.fullmatch(k) for k in state):
        kept = load_upstream_lora_state_dict(model, state, source)
        fresh = sorted({k.split(".")[0] for k in kept if not k.startswith("image_encoder.")})
        if fresh:
            logger.warning("%s: SAMed / HF-SAM file has no weights for %s (kept at initialisation)", source, fresh)
        return model
    adapter = hf_sam_adapter_state_dict(model)
    if set(state) == set(adapter):  # adapter-only: the foundation encoder is already in place
        wrong = [
            f"{k} {tuple(v.shape)} != {tuple(adapter[k].shape)}"
            for k, v in state.items()
            if v.shape != adapter[k].shape
        ]
        if wrong:
            raise CheckpointMismatchError(
                f"checkpoint {source} does not match HF-SAM:\n  shape mismatches ({len(wrong)}): {', '.join(wrong[:8])}"
            )
        model.load_state_dict(state, strict=False)
        return model
    load_state_dict_strict(model, state, source)
    return model


def build_hf_sam(
    num_classes: int,
    image_size: int = 512,
    variant: str = "vit_b",
    foundation_checkpoint: str | Path | None = None,
    checkpoint: str | Path | None = None,
    lora_rank: int = 4,
    use_awffm: bool | str = True,
    decoding_steps: int = 2,
    awffm_block: int | None = None,
    encoder_depth: int | None = None,
    encoder_embed_dim: int | None = None,
    encoder_num_heads: int | None = None,
    device: str | torch.device = "cpu",
) -> HFSAM:
    """An HF-SAM for `num_classes` foreground classes (K = num_classes + 1 outputs) at `image_size`.

    `foundation_checkpoint`: SAM weights (sam_vit_b_01ec64.pth; resized to `image_size`); the new
    K-token decoder parts (mask tokens, hypernetwork MLPs, IoU head) start fresh, as in SAMed's
    `load_from`. None: random weights, with a warning. `checkpoint`: a trained file, ours
    (`{'model': state_dict}`, full or adapter-only) or SAMed / HF-SAM's LoRA file; the foundation
    file is not read for a full one. `lora_rank`: SAMed 4, HF-SAM's train.py 5. `use_awffm`,
    `decoding_steps` (1 or 2): the ablation switches. `awffm_block`: the early block fused by AWFFM
    (default: the first global-attention block, 2 for ViT-B). `encoder_*`: tiny test encoders.
    Only LoRA, prompt encoder, decoders and AWFFM are trainable (`HF_SAM_TRAINABLE`).
    """
    use_awffm = as_bool(use_awffm, "use_awffm")
    if int(decoding_steps) not in (1, 2):
        raise ValueError(
            f"decoding_steps must be 1 (step-1 decoder only) or 2 (with skip-feature fusion), got {decoding_steps}"
        )
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1 foreground classes, got {num_classes}")
    checkpoint = none_if_null(checkpoint)
    state = read_sam_checkpoint(checkpoint) if checkpoint is not None else None
    full = state is not None and "image_encoder.patch_embed.proj.weight" in state
    with silenced(build_sam_segmenter.__module__, full):
        sam = build_sam_segmenter(
            variant,
            image_size,
            checkpoint=None if full else foundation_checkpoint,
            device=device,
            pixel_mean=0.0,
            pixel_std=1.0,
            encoder_depth=encoder_depth,
            encoder_embed_dim=encoder_embed_dim,
            encoder_num_heads=encoder_num_heads,
        )
    encoder = sam.image_encoder
    with torch.device(device):
        decoder = MaskDecoder(
            num_multimask_outputs=int(num_classes),
            transformer=sam.mask_decoder.transformer,
            transformer_dim=sam.mask_decoder.transformer_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        )
        decoder.iou_token.load_state_dict(sam.mask_decoder.iou_token.state_dict())
        decoder.output_upscaling.load_state_dict(sam.mask_decoder.output_upscaling.state_dict())
        if awffm_block is None:
            awffm_block = next(i for i, block in enumerate(encoder.blocks) if block.window_size == 0)
        awffm = AWFFM(encoder.patch_embed.proj.out_channels, decoder.transformer_dim) if use_awffm else None
        skip = SkipFusionDecoder(decoder.num_mask_tokens, decoder.transformer_dim) if int(decoding_steps) == 2 else None
    rank = int(lora_rank)
    add_qkv_lora(encoder.blocks, rank=rank, alpha=float(rank), targets=("q", "v"))
    model = HFSAM(encoder, sam.prompt_encoder, decoder, awffm, awffm_block if use_awffm else None, skip)
    if state is not None:
        load_hf_sam_checkpoint(model, state, str(checkpoint))
    freeze_except(model, [p for p in HF_SAM_TRAINABLE if getattr(model, p, True) is not None])  # modules switched off
    return model.to(device).eval()
