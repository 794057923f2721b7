"""AWFFM: HF-SAM's adaptive weighted feature fusion module (docs/methods.md#hf-sam).

Fuses low-level local features of an early image-encoder block into the high-level global
features the mask decoder works on, without replacing them:

    l   = compress(low)                          1x1 conv, C_low -> C             (B, C, h, w)
    a_s = SpatialAttention(fuse([high; l]))      1x1 conv 2C -> C, 3x3 attention  (B, 1, h, w)
    l'  = l * a_s                                spatial attention on the low-level branch
    a_c = ChannelAttention(l')                   reduction 8                       (B, C, 1, 1)
    out = l' + high * a_c                        channel re-weighting of the high-level branch, summed

The attention maps are the CBAM recipe (`monaiseg.networks.attention`). Parameter shapes equal
HF-SAM's (`mask_decoder.compress_vit_feat.0`, `mask_decoder.Att.{conv, spa.conv1, cha.fc1, cha.fc2}`),
so its trained weights map onto this module (`hf_sam.hf_sam_key_map`); HF-SAM's attention
convolutions have no bias, which maps to a zero bias here.
"""

from __future__ import annotations

import torch
from torch import nn

from monaiseg.networks.attention import ChannelAttention, SpatialAttention


class AWFFM(nn.Module):
    """low (B, C_low, h, w), high (B, C, h, w) -> fused (B, C, h, w); see the module docstring."""

    def __init__(self, low_channels: int, channels: int = 256, reduction: int = 8, kernel_size: int = 3):
        super().__init__()
        self.compress = nn.Conv2d(low_channels, channels, kernel_size=1)
        self.fuse = nn.Conv2d(2 * channels, channels, kernel_size=1)
        self.spatial = SpatialAttention(kernel_size)
        self.channel = ChannelAttention(channels, reduction)

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        if low.shape[-2:] != high.shape[-2:]:
            raise ValueError(
                f"AWFFM needs low- and high-level features on one grid, got {tuple(low.shape)} and {tuple(high.shape)}"
            )
        low = self.compress(low)
        low = low * self.spatial.attention(self.fuse(torch.cat([high, low], dim=1)))
        return low + high * self.channel.attention(low)
