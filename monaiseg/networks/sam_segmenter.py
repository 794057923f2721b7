"""SAM (v1), MedSAM and SAM-Med2D as a MONAI network with the same API as `SAM2Segmenter`.

`SAMSegmenter` *is* segment-anything's `Sam` (state-dict keys `image_encoder.*`,
`prompt_encoder.*`, `mask_decoder.*`, so the official files load strictly) with batched,
differentiable `predict_masks` / `forward` taking the prompts of `SAM2Segmenter`.

Input: intensities in [0, 1], (B, C, H, W), C = 1 (grey, repeated) or 3. The module resizes the
*whole* image to `image_size` x `image_size` (bilinear, anti-aliased when shrinking; no
aspect-preserving resize + padding as in Meta's SamPredictor, but as MedSAM and SAM-Med2D feed
their models) and normalises it, (x - pixel_mean) / pixel_std on the [0, 1] scale:
- SAM: ImageNet mean/std (Meta's 123.675/116.28/103.53 and 58.395/57.12/57.375 on [0, 255]);
- MedSAM: pixel_mean 0, pixel_std 1 (MedSAM_Inference.py: image resized to 1024, min-max scaled
  to [0, 1] and given to the image encoder directly, bypassing Sam.preprocess);
- SAM-Med2D: ImageNet mean/std on [0, 255] (DataLoader.py), then a plain resize to 256.
Prompts are in input pixels and scaled by (S / W, S / H) like the image.

SAM-Med2D's encoder adapters (`SAMMed2DAdapter`, `add_sam_med2d_adapters`) keep its key names
(`image_encoder.blocks.<i>.Adapter.*`), so `sam-med2d_b.pth` loads strictly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam
from torch import nn

from monaiseg.networks.sam2_segmenter import IMAGENET_MEAN, IMAGENET_STD, SAM2Segmenter


def normalize_sam_images(
    images: torch.Tensor, image_size: int, pixel_mean: torch.Tensor, pixel_std: torch.Tensor
) -> torch.Tensor:
    """(B, 1|3, H, W) in [0, 1] -> (B, 3, S, S) SAM encoder input, S = `image_size`: grey repeated,
    resized (bilinear, antialiased), (x - pixel_mean) / pixel_std (see `SAMSegmenter`)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"SAM expects images shaped (B, 1|3, H, W), got {tuple(images.shape)}")
    images = images.to(pixel_mean.dtype)
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    if images.shape[-2:] != (image_size, image_size):
        images = F.interpolate(
            images, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
        )
    return (images - pixel_mean) / pixel_std


class SAMSegmenter(Sam):
    """segment-anything's `Sam` with a training/inference API on batched 2D images.

    Prompts (pixels of the input image, x = column, y = row): `boxes` (K, 4) as (x0, y0, x1, y1);
    `points` (K, N, 2) as (x, y) with `point_labels` (K, N): 1 foreground, 0 background, -1
    padding; `mask_inputs` (K, 1, H, W) logits. Without any prompt the decoder gets no sparse
    token and the "no mask" dense embedding (SAM v1 has no padding-point convention as SAM2).
    `pixel_mean` / `pixel_std` (1, 3, 1, 1) are on the [0, 1] scale (not Sam's [0, 255]), so the
    inherited `preprocess` / `postprocess_masks` (Meta's [0, 255] pad-to-square pipeline) do not apply.
    """

    multimask_output: bool = False

    def __init__(
        self,
        image_encoder: ImageEncoderViT,
        prompt_encoder: PromptEncoder,
        mask_decoder: MaskDecoder,
        pixel_mean=IMAGENET_MEAN,
        pixel_std=IMAGENET_STD,
    ):
        super().__init__(image_encoder, prompt_encoder, mask_decoder)
        self.register_buffer("pixel_mean", torch.zeros(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.ones(1, 3, 1, 1), persistent=False)
        self.set_normalization(pixel_mean, pixel_std)

    # one value or (R, G, B) each, on [0, 1] intensities: the contract of SAM2Segmenter
    set_normalization = SAM2Segmenter.set_normalization

    def train(self, mode: bool = True) -> SAMSegmenter:
        """As `nn.Module.train`; an image encoder without trainable parameters stays in eval mode, so a frozen
        encoder with batch norm (LiteMedSAM's TinyViT) keeps normalising with its pretrained statistics."""
        super().train(mode)
        if not any(p.requires_grad for p in self.image_encoder.parameters()):
            self.image_encoder.eval()
        return self

    @property
    def image_size(self) -> int:
        """Side S of the square image the encoder sees."""
        return self.image_encoder.img_size

    def normalize_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 1|3, H, W) in [0, 1] -> (B, 3, S, S) encoder input, S = image_size."""
        return normalize_sam_images(images, self.image_size, self.pixel_mean, self.pixel_std)

    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Image embeddings (B, 256, S/16, S/16) and SAM2's high-res levels (none in SAM: []).
        The encoder runs without autograd when none of its parameters is trainable."""
        train_encoder = torch.is_grad_enabled() and any(p.requires_grad for p in self.image_encoder.parameters())
        with torch.set_grad_enabled(train_encoder):
            return self.image_encoder(self.normalize_images(images)), []

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

        K = B, or B = 1 and K prompt rows: several objects in one image, encoded once.
        `density` exists for API parity with `SAM2Segmenter` and must be None.
        """
        if density is not None:
            raise ValueError("a density map was given but SAM has no density_encoder (density prompts are SAM2-only)")
        height, width = images.shape[-2], images.shape[-1]
        batch = next((len(p) for p in (boxes, points) if p is not None), images.shape[0])
        if images.shape[0] not in (1, batch):
            raise ValueError(
                f"{batch} prompt rows for a batch of {images.shape[0]} images: give one per image, "
                "or one image with any number of objects"
            )
        if mask_inputs is not None and mask_inputs.shape[0] != batch:
            raise ValueError(f"mask_inputs has {mask_inputs.shape[0]} rows for {batch} prompt rows")
        if points is not None and point_labels is None:
            raise ValueError("points need point_labels (1 foreground, 0 background, -1 padding)")
        multimask = self.multimask_output if multimask_output is None else multimask_output
        embeddings, _ = self.encode_images(images)
        sparse, dense = self.encode_prompts((height, width), boxes, points, point_labels, mask_inputs)
        sparse, dense = sparse.expand(batch, -1, -1), dense.expand(batch, -1, -1, -1)  # prompt-free: 1 row
        low_res, iou = self.decode(embeddings, sparse, dense, multimask)
        return F.interpolate(low_res, size=(height, width), mode="bilinear", align_corners=False), iou

    def encode_prompts(
        self,
        size: tuple[int, int],
        boxes: torch.Tensor | None = None,
        points: torch.Tensor | None = None,
        point_labels: torch.Tensor | None = None,
        mask_inputs: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts in pixels of an (H, W) = `size` image (as in `predict_masks`; `mask_inputs` logits
        at any size, resized to the decoder's 4h x 4w) -> SAM's sparse (K, N, 256) and dense
        (K, 256, h, w) embeddings; no prompt at all: one "no prompt" row (1, 0, 256)."""
        height, width = size
        device = self.pixel_mean.device
        scale = torch.tensor([self.image_size / width, self.image_size / height], device=device)
        rows = next((len(p) for p in (boxes, points, mask_inputs) if p is not None), 1)
        point_prompt = None
        if points is not None and points.numel() > 0:
            if point_labels is None:
                raise ValueError("points need point_labels (1 foreground, 0 background, -1 padding)")
            point_prompt = (
                points.to(device, torch.float32).reshape(rows, -1, 2) * scale,
                point_labels.to(device).reshape(rows, -1).int(),
            )
        if boxes is not None:
            boxes = boxes.to(device, torch.float32).reshape(rows, 4) * scale.repeat(2)
        if mask_inputs is not None and tuple(mask_inputs.shape[-2:]) != tuple(self.prompt_encoder.mask_input_size):
            mask_inputs = F.interpolate(
                mask_inputs.to(device, self.pixel_mean.dtype),
                size=self.prompt_encoder.mask_input_size,
                mode="bilinear",
                align_corners=False,
            )
        return self.prompt_encoder(points=point_prompt, boxes=boxes, masks=mask_inputs)

    def decode(
        self, embeddings: torch.Tensor, sparse: torch.Tensor, dense: torch.Tensor, multimask_output: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image embeddings (B, 256, h, w) and K = B * n prompt rows (sparse (K, N, 256), dense
        (K, 256, h, w); rows b * n .. b * n + n - 1 belong to image b) -> low-res mask logits
        (K, M, 4h, 4w) and predicted IoU (K, M); M = 3 with `multimask_output`, else 1.
        (segment-anything's decoder pairs ONE image with any number of prompt rows.)"""
        batch, rows = embeddings.shape[0], sparse.shape[0]
        if rows % batch:
            raise ValueError(f"{rows} prompt rows cannot be shared by {batch} images")
        per_image = rows // batch
        image_pe = self.prompt_encoder.get_dense_pe()
        decoded = [
            self.mask_decoder(
                image_embeddings=embeddings[b : b + 1],
                image_pe=image_pe,
                sparse_prompt_embeddings=sparse[b * per_image : (b + 1) * per_image],
                dense_prompt_embeddings=dense[b * per_image : (b + 1) * per_image],
                multimask_output=multimask_output,
            )
            for b in range(batch)
        ]
        return torch.cat([d[0] for d in decoded]), torch.cat([d[1] for d in decoded])

    def forward(self, images: torch.Tensor, **prompts) -> torch.Tensor:
        """Mask logits (K, M, H, W) for images (B, 1|3, H, W) in [0, 1]; prompts as in `predict_masks`."""
        return self.predict_masks(images, **prompts)[0]


class SAMMed2DAdapter(nn.Module):
    """SAM-Med2D's encoder adapter, run in parallel with a ViT block's MLP on its norm2 output.

    (B, H, W, C) -> (B, H, W, C): a channel gate g = sigmoid(W2 relu(W1 mean_hw(x))) (C -> C/4
    -> C, no bias), then a spatial branch s = relu(convT(relu(conv(g * x)))) (3x3 stride-2
    conv, 4x4 stride-2 transposed conv, no bias), output LayerNorm(x + s). Children and their
    order give SAM-Med2D's keys: norm, channel.{0,2}, spatial.{0,2}. Odd token grids: s is
    cropped to H x W (SAM-Med2D itself only runs even grids).
    """

    def __init__(self, dim: int, ratio: float = 0.25):
        super().__init__()
        hidden = int(dim * ratio)
        self.norm = nn.LayerNorm(dim)
        self.channel = nn.Sequential(
            nn.Linear(dim, hidden, bias=False), nn.ReLU(), nn.Linear(hidden, dim, bias=False), nn.Sigmoid()
        )
        self.spatial = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=3, stride=2, padding=1, bias=False),
            nn.ReLU(),
            nn.ConvTranspose2d(dim, dim, kernel_size=4, stride=2, padding=1, bias=False),
            nn.ReLU(),
        )
        for module in self.modules():  # SAM-Med2D's initialisation
            if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[1:3]
        gated = x.permute(0, 3, 1, 2) * self.channel(x.mean(dim=(1, 2)))[:, :, None, None]
        spatial = self.spatial(gated)[..., :height, :width]
        return self.norm(x + spatial.permute(0, 2, 3, 1))

    def add_to_mlp_output(self, mlp: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> torch.Tensor:
        """Forward hook on the block's mlp: mlp(n) -> mlp(n) + adapter(n), n = norm2(x)."""
        return output + self(inputs[0])


def add_sam_med2d_adapters(image_encoder: ImageEncoderViT) -> list[str]:
    """Give every block of a segment-anything ViT a `SAMMed2DAdapter` named `Adapter`, so the
    block computes x + mlp(norm2(x)) + Adapter(norm2(x)) (SAM-Med2D). The existing keys are kept
    (the adapter is added by a forward hook on `mlp`, see `adapters.py`). Returns the adapters'
    names relative to the encoder; ValueError if they are already there."""
    if any(hasattr(block, "Adapter") for block in image_encoder.blocks):
        raise ValueError("the image encoder already has SAM-Med2D adapters")
    names = []
    for i, block in enumerate(image_encoder.blocks):
        weight = block.norm2.weight
        block.Adapter = SAMMed2DAdapter(weight.shape[0]).to(weight.device, weight.dtype)
        block.mlp.register_forward_hook(block.Adapter.add_to_mlp_output)
        names.append(f"blocks.{i}.Adapter")
    return names
