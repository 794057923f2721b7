"""BloodCellSAM2's cell-density prior prompt branch.

A coarse cell-density map (any size, e.g. counts per region or a blurred dot map) is encoded
into a dense prompt embedding that is ADDED to SAM2's own dense prompt embedding (the
"no mask" embedding or the encoded mask prompt), steering the decoder towards dense regions.
The encoder follows the shape of SAM's mask-prompt downscaling: resize to 4E x 4E, two
stride-2 2x2 convolutions with LayerNorm2d + GELU, and a 1x1 convolution to the prompt width.
The last convolution is zero-initialised, so the branch adds exactly zero before training and
a pretrained SAM2 behaves as without it.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from sam2.modeling.sam2_utils import LayerNorm2d
from torch import nn


class DensityPromptEncoder(nn.Module):
    """Density map (B, 1, h, w) -> dense prompt embedding (B, embed_dim, E, E).

    E (the image-embedding size, image_size // 16) is given at call time, so one module works
    at any image size. `hidden_channels` is the width after the second convolution (the first
    has hidden_channels // 4), as SAM's mask downscaling (16).
    """

    def __init__(self, embed_dim: int = 256, hidden_channels: int = 16):
        super().__init__()
        if hidden_channels < 4 or hidden_channels % 4:
            raise ValueError(f"hidden_channels must be a positive multiple of 4, got {hidden_channels}")
        quarter = hidden_channels // 4
        last = nn.Conv2d(hidden_channels, embed_dim, kernel_size=1)
        self.layers = nn.Sequential(
            nn.Conv2d(1, quarter, kernel_size=2, stride=2),
            LayerNorm2d(quarter),
            nn.GELU(),
            nn.Conv2d(quarter, hidden_channels, kernel_size=2, stride=2),
            LayerNorm2d(hidden_channels),
            nn.GELU(),
            last,
        )
        assert last.bias is not None  # a Conv2d with bias=True
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, density: torch.Tensor, embedding_size: int | tuple[int, int]) -> torch.Tensor:
        """density (B, 1, h, w) -> (B, embed_dim, E_h, E_w) with (E_h, E_w) = `embedding_size`."""
        if density.ndim != 4 or density.shape[1] != 1:
            raise ValueError(f"a density map is shaped (B, 1, h, w), got {tuple(density.shape)}")
        size = (embedding_size, embedding_size) if isinstance(embedding_size, int) else tuple(embedding_size)
        weight = cast(nn.Conv2d, self.layers[0]).weight
        density = density.to(weight.device, weight.dtype)
        density = F.interpolate(
            density, size=(4 * size[0], 4 * size[1]), mode="bilinear", align_corners=False, antialias=True
        )
        return self.layers(density)
