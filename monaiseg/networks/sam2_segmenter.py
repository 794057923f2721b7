"""SAM2 as a MONAI network: one module for prompted training and volume/video propagation.

`SAM2Segmenter` *is* sam2's `SAM2VideoPredictor` (so its state dict has exactly the official
keys and sam2's memory/tracking code is used, patched only in `sam2_private`) with a differentiable, batched
`forward` added for training and for `verify_net_in_out`.

Input images are intensities in [0, 1], shape (B, C, H, W) with C = 1 (grey, repeated) or 3;
the module resizes them to `image_size` and normalises them itself ((x - pixel_mean) / pixel_std,
SAM2's ImageNet statistics unless set otherwise), so training, evaluation and propagation share
one input definition.

Optional PEFT parts (see `peft_sam2.py`) keep the official keys: `density_encoder` (None by
default, then absent from the state dict) adds a cell-density prompt to the dense prompt.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from monaiseg.networks.sam2_private import PatchedVideoPredictor, backbone_features

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def set_pixel_normalization(module: nn.Module, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
    """Set the (1, 3, 1, 1) `pixel_mean` / `pixel_std` buffers of `module` (the input contract of
    `SAM2Segmenter`, `SAMSegmenter`, `SAMClassifier`): one value for all three channels or one per
    channel (R, G, B), on [0, 1] intensities."""
    values = []
    for name, given in (("pixel_mean", mean), ("pixel_std", std)):
        value = torch.as_tensor(given, dtype=torch.float64).flatten()
        if value.numel() == 1:
            value = value.expand(3)
        if value.numel() != 3 or not torch.isfinite(value).all():
            raise ValueError(f"{name} must be one finite value or three (R, G, B), got {value.tolist()}")
        values.append(value)
    if not (values[1] > 0).all():
        raise ValueError(f"pixel_std must be > 0, got {values[1].tolist()}")
    with torch.no_grad():
        module.get_buffer("pixel_mean").copy_(values[0].view(1, 3, 1, 1))
        module.get_buffer("pixel_std").copy_(values[1].view(1, 3, 1, 1))


class SAM2Segmenter(PatchedVideoPredictor):
    """SAM2 with a training/inference `forward` on batched 2D images with prompts.

    Prompts are in pixel coordinates of the input image (x = column, y = row):
    `boxes` (B, 4) as (x0, y0, x1, y1); `points` (B, N, 2) as (x, y) with `point_labels`
    (B, N): 1 foreground, 0 background, -1 padding; `mask_inputs` (B, 1, H, W) logits.
    Without any prompt the decoder runs on SAM2's "no prompt" padding point. `density`
    (B, 1, h, w) is a coarse density map for `density_encoder` (a `DensityPromptEncoder`).
    """

    multimask_output: bool = False
    pred_obj_scores: bool  # set by SAM2Base.__init__ (untyped: sam2 is imported as Any)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.register_module("density_encoder", None)

    def set_normalization(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        """Set the input normalisation (x - mean) / std on [0, 1] intensities: one value for all
        three channels or one per channel (R, G, B)."""
        set_pixel_normalization(self, mean, std)

    def normalize_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1|3, H, W) in [0, 1] -> (B, 3, S, S) SAM2 input, S = image_size."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"SAM2 expects images shaped (B, 1|3, H, W), got {tuple(images.shape)}")
        images = images.to(self.pixel_mean.dtype)
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        if images.shape[-2:] != (self.image_size, self.image_size):
            images = F.interpolate(
                images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False
            )
        return (images - self.pixel_mean) / self.pixel_std

    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """SAM2 image features for decoding without memory: (B, 256, S/16, S/16) and high-res levels."""
        train_encoder = torch.is_grad_enabled() and any(p.requires_grad for p in self.image_encoder.parameters())
        with torch.set_grad_enabled(train_encoder):
            backbone_out = self.forward_image(self.normalize_images(images))
        _, feats, _, sizes = backbone_features(self, backbone_out)
        if self.directly_add_no_mem_embed:
            feats[-1] = feats[-1] + self.no_mem_embed
        maps = [f.permute(1, 2, 0).reshape(f.shape[1], f.shape[2], *hw) for f, hw in zip(feats, sizes)]
        return maps[-1], maps[:-1]

    def _prompt_points(
        self, batch: int, height: int, width: int, device: torch.device, boxes=None, points=None, point_labels=None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Boxes (as SAM2's corner points, labels 2/3) and points, scaled from input pixels to
        `image_size`: coords (B, N, 2), labels (B, N); None without any prompt."""
        scale = torch.tensor([self.image_size / width, self.image_size / height], device=device)
        coords, labels = [], []
        if boxes is not None:
            coords.append(boxes.to(device, torch.float32).reshape(batch, 2, 2) * scale)
            labels.append(torch.tensor([[2, 3]], device=device).expand(batch, 2))
        if points is not None:
            if point_labels is None:
                raise ValueError("points need point_labels (1 foreground, 0 background, -1 padding)")
            coords.append(points.to(device, torch.float32).reshape(batch, -1, 2) * scale)
            labels.append(point_labels.to(device).reshape(batch, -1))
        if not coords:
            return None
        return torch.cat(coords, 1), torch.cat(labels, 1).int()

    def predict_masks(
        self,
        images: torch.Tensor,
        boxes: torch.Tensor | None = None,
        points: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_inputs: torch.Tensor | None = None,
        multimask_output: bool | None = None,
        density: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mask logits (K, M, H, W) at the input size and predicted IoU (K, M); M = 1 or 3.

        K = B, or B = 1 and K prompt rows (boxes (K, 4), points (K, N, 2)): several objects in one
        image, whose features are then computed once and shared (density: (1 or K, 1, h, w)).
        """
        height, width = images.shape[-2], images.shape[-1]
        batch = next((len(p) for p in (boxes, points) if p is not None), images.shape[0])
        if images.shape[0] not in (1, batch):
            raise ValueError(
                f"{batch} prompt rows for a batch of {images.shape[0]} images: give one per image, "
                "or one image with any number of objects"
            )
        if density is not None:
            if self.density_encoder is None:
                raise ValueError("a density map was given but the model has no density_encoder (density_prior off)")
            if density.shape[0] not in (1, batch):
                raise ValueError(
                    f"density has batch {density.shape[0]}, the images {images.shape[0]} with {batch} prompt rows"
                )
            density = density.expand(batch, -1, -1, -1)
        multimask = self.multimask_output if multimask_output is None else multimask_output
        device = self.pixel_mean.device
        prompt = self._prompt_points(batch, height, width, device, boxes, points, point_labels)
        image_embed, high_res = self.encode_images(images)
        if images.shape[0] != batch:  # one image, several objects: share its features
            image_embed = image_embed.expand(batch, -1, -1, -1)
            high_res = [f.expand(batch, -1, -1, -1) for f in high_res]
        if prompt is None:  # SAM2's prompt-free decoding: one padding point
            prompt = torch.zeros(batch, 1, 2, device=device), -torch.ones(batch, 1, device=device, dtype=torch.int)
        if mask_inputs is not None:
            mask_size = self.sam_prompt_encoder.mask_input_size
            mask_inputs = F.interpolate(
                mask_inputs.to(image_embed), size=mask_size, mode="bilinear", align_corners=False
            )
        sparse, dense = self.sam_prompt_encoder(points=prompt, boxes=None, masks=mask_inputs)
        if density is not None:
            dense = dense + self.density_encoder(density, dense.shape[-2:])
        low_res, iou, _, _ = self.sam_mask_decoder(
            image_embeddings=image_embed,
            image_pe=self.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask,
            repeat_image=False,
            high_res_features=high_res,
        )
        logits = F.interpolate(low_res, size=(height, width), mode="bilinear", align_corners=False)
        return logits, iou

    def forward_clip(
        self,
        clips: torch.Tensor,
        boxes: torch.Tensor | None = None,
        points: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        return_memory: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Track through clips (B, 1|3, H, W, T) from prompts on frame 0 with SAM2's memory, as
        SAM2/MedSAM2 2025 train on short clips; differentiable. Returns logits (K, 1, H, W, T).

        K, the number of prompt rows (boxes (K, 4), points (K, N, 2)), equals B, or B = 1 and
        K objects are tracked in the one clip: its frames are encoded once and the features
        shared by the K objects.

        With `return_memory` the memory encoder also runs on the last frame and
        `(logits, memory)` is returned: memory (K, C_mem, S/16, S/16, T), S = image_size, holds
        each frame's `maskmem_features` (differentiable, in the model dtype), e.g. for a
        temporal loss.

        SAM2's object-presence gate (object score <= 0 -> constant -1024 mask, no gradient) is
        off while tracking a clip, so every frame's mask is decoded and trained (frames where the
        object has ended learn empty masks); the presence head keeps its (pretrained) weights.
        """
        batch, _, height, width, frames = clips.shape
        prompt_rows = next((len(p) for p in (boxes, points) if p is not None), batch)
        if batch not in (1, prompt_rows):
            raise ValueError(
                f"{prompt_rows} prompt rows for a batch of {batch} clips: give one per clip, "
                "or one clip with any number of objects"
            )
        prompt = self._prompt_points(prompt_rows, height, width, clips.device, boxes, points, point_labels)
        if prompt is None:
            raise ValueError("clip training needs a box or points on the first frame")
        images = clips.permute(0, 4, 1, 2, 3).reshape(batch * frames, clips.shape[1], height, width)
        train_encoder = torch.is_grad_enabled() and any(p.requires_grad for p in self.image_encoder.parameters())
        with torch.set_grad_enabled(train_encoder):
            backbone_out = self.forward_image(self.normalize_images(images))
        _, feats, pos_embeds, sizes = backbone_features(self, backbone_out)  # (HW, B*T, C) each
        # the clip each object is tracked in: its own, or clip 0 for all (frames encoded once)
        clip_of_object = (
            torch.arange(prompt_rows, device=clips.device)
            if batch > 1
            else clips.new_zeros(prompt_rows, dtype=torch.long)
        )
        memory: dict[str, dict[int, dict]] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        logits, memories = [], []
        gate, self.pred_obj_scores = self.pred_obj_scores, False
        try:
            for t in range(frames):
                index = clip_of_object * frames + t
                out = self.track_step(
                    frame_idx=t,
                    is_init_cond_frame=t == 0,
                    current_vision_feats=[f[:, index] for f in feats],
                    current_vision_pos_embeds=[p[:, index] for p in pos_embeds],
                    feat_sizes=sizes,
                    point_inputs={"point_coords": prompt[0], "point_labels": prompt[1]} if t == 0 else None,
                    mask_inputs=None,
                    output_dict=memory,
                    num_frames=frames,
                    run_mem_encoder=return_memory or t < frames - 1,
                )
                memory["cond_frame_outputs" if t == 0 else "non_cond_frame_outputs"][t] = out
                logits.append(
                    F.interpolate(
                        out["pred_masks_high_res"], size=(height, width), mode="bilinear", align_corners=False
                    )
                )
                if return_memory:
                    memories.append(out["maskmem_features"].to(self.pixel_mean.dtype))
        finally:
            self.pred_obj_scores = gate
        if return_memory:
            return torch.stack(logits, dim=-1), torch.stack(memories, dim=-1)
        return torch.stack(logits, dim=-1)

    def forward(self, images: torch.Tensor, **prompts) -> torch.Tensor | dict[str, torch.Tensor]:
        """Mask logits (B, M, H, W) for images (B, 1|3, H, W) in [0, 1] (prompts as in
        `predict_masks`), or (K, 1, H, W, T) for clips (B, 1|3, H, W, T) (see `forward_clip`);
        clips with `return_memory=True` give {"logits": (K, 1, H, W, T), "memory": (K, C, h, w, T)}."""
        if images.ndim == 5:
            out = self.forward_clip(images, **prompts)
            if isinstance(out, tuple):  # return_memory=True
                return {"logits": out[0], "memory": out[1]}
            return out
        if prompts.pop("return_memory", False):
            raise ValueError("return_memory needs clips shaped (B, 1|3, H, W, T)")
        return self.predict_masks(images, **prompts)[0]
