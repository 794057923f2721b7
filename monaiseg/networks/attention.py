"""Channel and spatial attention (the CBAM recipe, Woo et al., ECCV 2018; our own small modules),
shared by SAM-MedCls (after the image encoder) and SAM-AutoMed's improved prompt generator."""

from __future__ import annotations

import torch
from torch import nn


class ChannelAttention(nn.Module):
    """Channel attention: a_c = sigmoid(mlp(avg_hw(x)) + mlp(max_hw(x))), output x * a_c.

    x (B, C, H, W) -> (B, C, H, W); `attention(x)` is a_c (B, C, 1, 1) in (0, 1). The shared MLP
    is two 1x1 convolutions C -> C / reduction -> C with a ReLU between them.
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, channels, 1))

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class SpatialAttention(nn.Module):
    """Spatial attention: a_s = sigmoid(conv_kxk([mean_c(x); max_c(x)])), output x * a_s.

    x (B, C, H, W) -> (B, C, H, W); `attention(x)` is a_s (B, 1, H, W) in (0, 1). The convolution
    maps the 2 pooled maps to 1 with a `kernel_size` x `kernel_size` kernel, 'same' padding.
    """

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"SpatialAttention kernel_size must be odd, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.conv(torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)
