"""TinyViT image encoder in the configuration of LiteMedSAM (MobileSAM's encoder at a 256 input).

TinyViT (Wu et al., "TinyViT: Fast Pretraining Distillation for Small Vision Transformers", ECCV
2022) is a 4-stage hierarchy: a convolutional stage of MBConv blocks, then three stages of windowed
self-attention blocks with a learned relative-position bias per head, each followed by a depthwise
3x3 convolution and an MLP. MobileSAM (Zhang et al., "Faster Segment Anything: Towards Lightweight
SAM for Mobile Applications", 2023) distilled SAM's ViT-H into TinyViT-5M and added SAM's neck
(320 -> 256 channels); LiteMedSAM (the MedSAM authors' light model; MedSAM: Ma et al., "Segment
anything in medical images", Nature Communications 2024) trained that encoder on medical images at
256 x 256 with a stride-1 pixel embedding, so the embedding is (B, 256, 64, 64) as SAM's.

Stages of `TinyViT()` (B, 3, 256, 256) -> (B, 256, 64, 64):
    patch_embed  two 1x1 conv + BN, 3 -> 32 -> 64            (B, 64, 256, 256)
    layers.0     2 MBConv, merge 64 -> 128, stride 2          (B, 128, 128, 128)
    layers.1     2 attention blocks, window 7, merge -> 160   (B, 160, 64, 64)
    layers.2     6 attention blocks, window 14, merge -> 320, stride 1
    layers.3     2 attention blocks, window 7                 (B, 320, 64, 64)
    neck         1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d (B, 256, 64, 64)
Module names and parameter shapes are those of the official LiteMedSAM file (`layers.<i>.blocks.
<j>.attn.qkv`, `...local_conv.c` / `.bn`, `neck.<k>`), so it loads strictly.

Why not timm's `TinyVit` (timm 1.0.31, measured with the same dims / depths / heads / windows):
none of its 294 state-dict names equals one of the 298 official encoder names (`stages.*`,
`ConvNorm.conv`, the patch merging at the *start* of a stage vs. `layers.*`, `c`, merging at the
end); its stem is two 3x3 stride-2 convolutions (32, 3, 3, 3) where LiteMedSAM has 1x1 stride-1
ones (32, 3, 1, 1); every merge has stride 2, so a 256 input gives (B, 320, 8, 8), not 64 x 64;
and it ends in a classifier head instead of SAM's neck.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from torch import nn

from .encoder_runtime import ExportedEncoder, resolve_runtime
from .exported_module import ExportedModule


class ConvBN(nn.Sequential):
    """Conv2d without bias followed by BatchNorm2d (children `c`, `bn`); (B, C, H, W) -> (B, C', H', W')."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1, groups: int = 1):
        super().__init__()
        self.c = nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch)


class PixelEmbed(nn.Module):
    """Per-pixel embedding (B, 3, H, W) -> (B, C, H, W): 1x1 ConvBN to C/2, GELU, 1x1 ConvBN to C."""

    def __init__(self, in_ch: int, dim: int):
        super().__init__()
        self.seq = nn.Sequential(ConvBN(in_ch, dim // 2), nn.GELU(), ConvBN(dim // 2, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual (B, C, H, W) -> (B, C, H, W): 1x1 expand, depthwise 3x3, 1x1 project, GELUs."""

    def __init__(self, dim: int, expand: float = 4.0):
        super().__init__()
        hidden = int(dim * expand)
        self.conv1 = ConvBN(dim, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(x + self.conv3(y))


class PatchMerging(nn.Module):
    """(B, C, H, W) -> (B, C', H / s, W / s): 1x1 ConvBN to C', GELU, depthwise 3x3 stride s, GELU, 1x1 ConvBN."""

    def __init__(self, dim: int, out_dim: int, stride: int = 2):
        super().__init__()
        self.conv1 = ConvBN(dim, out_dim)
        self.conv2 = ConvBN(out_dim, out_dim, 3, stride=stride, groups=out_dim)
        self.conv3 = ConvBN(out_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside one window of w x w tokens, (N, w*w, C) -> (N, w*w, C).

    Pre-norm; `qkv` packs (q, k, v) per head; the bias of a token pair is a learned per-head value
    for their offset (|dy|, |dx|), `attention_biases` (heads, w*w) indexed by |dy| * w + |dx|.
    """

    bias_index: torch.Tensor  # (w*w, w*w), a non-persistent buffer

    def __init__(self, dim: int, num_heads: int, window: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, window * window))
        y, x = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
        y, x = y.flatten(), x.flatten()
        offsets = (y[:, None] - y[None, :]).abs() * window + (x[:, None] - x[None, :]).abs()
        self.register_buffer("bias_index", offsets, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, c = x.shape
        q, k, v = self.qkv(self.norm(x)).view(n, t, self.num_heads, 3, -1).permute(3, 0, 2, 1, 4)
        # written out rather than F.scaled_dot_product_attention: this order of operations reproduces
        # the reference outputs bit for bit (SDPA: 3e-6 off in the embedding, 6e-5 in the mask logits)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.attention_biases[:, self.bias_index]
        out = attn.softmax(dim=-1) @ v  # (n, heads, t, c / heads)
        return self.proj(out.transpose(1, 2).reshape(n, t, c))


class NormMlp(nn.Module):
    """LayerNorm then Linear(C, rC), GELU, Linear(rC, C) on (..., C)."""

    def __init__(self, dim: int, ratio: float = 4.0):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, int(dim * ratio))
        self.fc2 = nn.Linear(int(dim * ratio), dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """(B, C, H, W) -> (B, C, H, W): x + windowed attention (zero-padded to whole windows), a
    depthwise 3x3 ConvBN (`local_conv`, no residual), then x + MLP."""

    def __init__(self, dim: int, num_heads: int, window: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.window = window
        self.attn = WindowAttention(dim, num_heads, window)
        self.local_conv = ConvBN(dim, dim, 3, groups=dim)
        self.mlp = NormMlp(dim, mlp_ratio)

    def windowed_attention(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C); padded tokens take part as keys, as in TinyViT."""
        b, h, w, c = x.shape
        s = self.window
        ph, pw = -h % s, -w % s
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
        gh, gw = (h + ph) // s, (w + pw) // s
        windows = x.reshape(b, gh, s, gw, s, c).transpose(2, 3).reshape(-1, s * s, c)
        x = self.attn(windows).view(b, gh, gw, s, s, c).transpose(2, 3).reshape(b, gh * s, gw * s, c)
        return x[:, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        tokens = tokens + self.windowed_attention(tokens)
        tokens = self.local_conv(tokens.permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1)
        tokens = tokens + self.mlp(tokens)
        return tokens.permute(0, 3, 1, 2).contiguous()


class Stage(nn.Module):
    """`blocks` at constant resolution, then an optional `downsample`; (B, C, H, W) -> (B, C', H', W')."""

    def __init__(self, blocks: Sequence[nn.Module], downsample: nn.Module | None = None):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(ExportedModule):
    """TinyViT encoder with SAM's neck: (B, 3, S, S) -> (B, out_chans, S / r, S / r); defaults: LiteMedSAM.

    `merge_strides[i]` is the stride of the merge after stage i (LiteMedSAM / MobileSAM: 2, 2, 1, r = 4).
    `img_size` is the input side S the prompt encoder and `SAMSegmenter` are built for. Parameters
    keep PyTorch's default initialisation: the encoder is meant to be loaded with released weights.

    `set_runtime("openvino" | "onnxruntime", precision)` (precision "f32", "bf16", "int8", "auto":
    `encoder_runtime`) runs inference (eval mode, no autograd, float32
    CPU input of side S) through an `ExportedEncoder`, exported at the first such call and again after
    `load_state_dict` or training mode; other calls, and a failed export (logged), use the eager module.
    """

    runtime: str = "eager"
    precision: str = "f32"

    def __init__(
        self,
        img_size: int = 256,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        merge_strides: Sequence[int] = (2, 2, 1),
        mlp_ratio: float = 4.0,
        mbconv_expand: float = 4.0,
        out_chans: int = 256,
    ):
        super().__init__()
        if not len(embed_dims) == len(depths) == len(num_heads) == len(window_sizes) == len(merge_strides) + 1:
            raise ValueError(
                "embed_dims, depths, num_heads and window_sizes need one entry per stage, merge_strides one fewer"
            )
        self.img_size = img_size
        self.patch_embed = PixelEmbed(in_chans, embed_dims[0])
        self.layers = nn.ModuleList()
        for i, (dim, depth) in enumerate(zip(embed_dims, depths)):
            blocks: list[nn.Module]
            if i == 0:
                blocks = [MBConv(dim, mbconv_expand) for _ in range(depth)]
            else:
                blocks = [TinyViTBlock(dim, num_heads[i], window_sizes[i], mlp_ratio) for _ in range(depth)]
            merge = PatchMerging(dim, embed_dims[i + 1], merge_strides[i]) if i < len(merge_strides) else None
            self.layers.append(Stage(blocks, merge))
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, 1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        self.in_chans = in_chans

    def set_runtime(
        self, runtime: str = "eager", precision: str = "f32", device: str | torch.device = "cpu"
    ) -> TinyViT:
        """Run inference with `runtime` on `device` ("eager", "openvino", "onnxruntime", "auto": `resolve_runtime`)."""
        self.runtime, self.precision = resolve_runtime(runtime, device, precision), precision
        self.drop_export()
        return self

    def _exported_forward(self, x: torch.Tensor) -> torch.Tensor | None:
        """The exported runtime's output for `x`, or None when the eager module has to run."""
        shape = (self.in_chans, self.img_size, self.img_size)
        if (
            self.runtime == "eager"
            or torch.jit.is_tracing()  # the export itself, or a TorchScript trace of the network
            or self.training
            or torch.is_grad_enabled()
            or x.device.type != "cpu"
            or x.dtype != torch.float32
            or tuple(x.shape[1:]) != shape
        ):
            return None
        exported = self.ensure_exported()
        return None if exported is None else exported(x)

    def _export(self) -> ExportedEncoder:
        return ExportedEncoder(self, (1, self.in_chans, self.img_size, self.img_size), self.runtime, self.precision)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) -> image embedding (B, out_chans, S / r, S / r), r = product of `merge_strides`."""
        fast = self._exported_forward(x)
        if fast is not None:
            return fast
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)
