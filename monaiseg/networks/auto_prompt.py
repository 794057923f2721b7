"""SAM-AutoMed's prompt generator (docs/methods.md#sam-automed): a torchvision MobileNetV3 that looks at the
image and replaces SAM-Med2D's prompt encoder, so segmentation needs no human prompt.

For every class c it produces what SAM's prompt encoder would give the mask decoder for one
object: `sparse[:, c]` (B, N, 256) prompt tokens and `dense[:, c]` (B, 256, h, w), h = w =
image_size / 16 (16 x 16 at SAM-Med2D's 256). The input is the image as SAM-Med2D's encoder
sees it: (B, 3, S, S), ImageNet-normalised, which is also what MobileNetV3's ImageNet weights
expect; the backbone (`features`, stride 32) gives F (B, Cf, S/32, S/32), Cf = 576 (small) or
960 (large).

`attention=False`, plain MobileNetV3: tokens = Linear(mean_hw F) reshaped to (C, N, 256);
dense_c = e + resize(Conv1x1(F))_c, one 256-channel slice of the convolution per class.

`attention=True`, the "improved" MobileNetV3 (our design; the paper gives no details):
1. F is projected to 256 channels (1x1 conv + LayerNorm2d) and refined by channel then spatial
   attention (CBAM: a shared MLP on the average- and max-pooled channels gates the channels; a
   7x7 conv on the channel-mean and channel-max maps gates the positions);
2. learnable class queries Q (C x N, 256), N(0, 1) like SAM's point embeddings, cross-attend to
   the refined features plus SAM's random-Fourier positional encoding (pre-norm multi-head
   attention and an MLP, both residual): the tokens of class c say where class c is;
3. each class's mean token gates the feature channels (sigmoid(Linear)), and a 1x1 conv of the
   gated features, resized to h x w, gives that class's dense map: dense_c = e + resize(...).

In both, `e` (`dense_bias`, 256) starts as SAM-Med2D's "no mask" embedding (copied by
`SAMAutoMed`) and the last dense convolution is zero-initialised, so at the start the decoder
sees exactly its usual no-mask dense input and only the tokens differ; the tokens are not
zero-initialised so the backbone gets gradients from the first step.
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from segment_anything.modeling.common import LayerNorm2d
from segment_anything.modeling.prompt_encoder import PositionEmbeddingRandom
from torch import nn
from torchvision.models import mobilenet_v3_large, mobilenet_v3_small

from monaiseg.networks.attention import ChannelAttention, SpatialAttention
from monaiseg.networks.checkpoint import load_state_dict_strict

BACKBONES = {"small": mobilenet_v3_small, "large": mobilenet_v3_large}


def mobilenet_v3_features(size: str = "large", weights: str | Path | None = None) -> nn.Sequential:
    """torchvision MobileNetV3 `features` (B, 3, S, S) -> (B, Cf, S/32, S/32), random init or the
    `features.*` tensors of torchvision's ImageNet file (e.g. mobilenet_v3_large-8738ca79.pth),
    read with weights_only=True and loaded strictly."""
    if size not in BACKBONES:
        raise ValueError(f"unknown MobileNetV3 size {size!r}; choose one of {sorted(BACKBONES)}")
    features = BACKBONES[size](weights=None).features
    if isinstance(weights, str) and weights.strip().lower() in ("", "none", "null"):
        weights = None
    if weights is None:
        return features
    path = Path(weights)
    if not path.is_file():
        raise FileNotFoundError(
            f"MobileNetV3 weights {path} not found; fetch them with: python -m monai.bundle "
            f"download_large_files --bundle_path <bundle>, or set backbone_weights to null"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"MobileNetV3 weights {path} cannot be read as a weights-only torch file: {exc}") from exc
    state = state.get("model", state) if isinstance(state, dict) else {}
    state = {k[len("features.") :]: v for k, v in state.items() if k.startswith("features.")}
    load_state_dict_strict(features, state, source=f"{path} (features.* of torchvision mobilenet_v3_{size})")
    return features


class ClassQueryAttention(nn.Module):
    """Learnable queries (Q, D) cross-attending to features (B, D, h, w) + positions -> tokens (B, Q, D)."""

    def __init__(self, num_queries: int, dim: int, num_heads: int = 8, mlp_ratio: int = 4):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_queries, dim))
        self.norm_q, self.norm_kv, self.norm_mlp = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_ratio * dim), nn.GELU(), nn.Linear(mlp_ratio * dim, dim))

    def forward(self, features: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        values = self.norm_kv(features.flatten(2).transpose(1, 2))  # (B, hw, D)
        keys = values + positions.flatten(1).T[None]
        queries = self.queries.expand(features.shape[0], -1, -1)
        tokens = queries + self.attention(self.norm_q(queries), keys, values, need_weights=False)[0]
        return tokens + self.mlp(self.norm_mlp(tokens))


class MobileNetPromptGenerator(nn.Module):
    """Image (B, 3, S, S) -> sparse (B, C, N, D) and dense (B, C, D, h, w) prompts, C classes.

    `backbone` "small" | "large"; `backbone_weights` None or torchvision's ImageNet file;
    `attention` the improved generator (module docstring) or plain MobileNetV3; `embedding_size`
    (h, w) of SAM's image embedding (S / 16); `embed_dim` D = SAM's prompt dimension (256).
    """

    def __init__(
        self,
        num_classes: int,
        num_tokens: int = 2,
        backbone: str = "large",
        backbone_weights: str | Path | None = None,
        attention: bool = True,
        embedding_size: tuple[int, int] = (16, 16),
        embed_dim: int = 256,
        num_heads: int = 8,
    ):
        super().__init__()
        if num_classes < 1 or num_tokens < 1:
            raise ValueError(f"num_classes and num_tokens must be >= 1, got {num_classes} and {num_tokens}")
        self.num_classes, self.num_tokens, self.embed_dim = num_classes, num_tokens, embed_dim
        self.embedding_size, self.attention = tuple(embedding_size), attention
        self.backbone = mobilenet_v3_features(backbone, backbone_weights)
        channels = cast(nn.Conv2d, cast(nn.Sequential, self.backbone[-1])[0]).out_channels  # Conv2dNormActivation
        self.dense_bias = nn.Parameter(torch.zeros(embed_dim))
        if attention:
            self.project = nn.Sequential(nn.Conv2d(channels, embed_dim, 1, bias=False), LayerNorm2d(embed_dim))
            self.refine = nn.Sequential(ChannelAttention(embed_dim, reduction=4), SpatialAttention(kernel_size=7))
            self.positions = PositionEmbeddingRandom(embed_dim // 2)
            self.class_queries = ClassQueryAttention(num_classes * num_tokens, embed_dim, num_heads)
            self.class_gate = nn.Linear(embed_dim, embed_dim)
            self.dense_head = nn.Conv2d(embed_dim, embed_dim, 1)
        else:
            self.token_head = nn.Linear(channels, num_classes * num_tokens * embed_dim)
            self.dense_head = nn.Conv2d(channels, num_classes * embed_dim, 1)
        assert self.dense_head.bias is not None  # a Conv2d with bias=True
        nn.init.zeros_(self.dense_head.weight)
        nn.init.zeros_(self.dense_head.bias)

    def _resize(self, maps: torch.Tensor) -> torch.Tensor:
        return F.interpolate(maps, size=self.embedding_size, mode="bilinear", align_corners=False)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised images (B, 3, S, S) -> sparse (B, C, N, D), dense (B, C, D, h, w)."""
        b, c, n, d = images.shape[0], self.num_classes, self.num_tokens, self.embed_dim
        features = self.backbone(images)
        if not self.attention:
            sparse = self.token_head(features.mean(dim=(2, 3))).view(b, c, n, d)
            dense = self._resize(self.dense_head(features)).view(b, c, d, *self.embedding_size)
        else:
            features = self.refine(self.project(features))  # (B, D, h', w')
            tokens = self.class_queries(features, self.positions(features.shape[-2:]))  # (B, C * N, D)
            sparse = tokens.view(b, c, n, d)
            gate = torch.sigmoid(self.class_gate(sparse.mean(dim=2)))  # (B, C, D)
            gated = (features[:, None] * gate[..., None, None]).flatten(0, 1)  # (B * C, D, h', w')
            dense = self._resize(self.dense_head(gated)).view(b, c, d, *self.embedding_size)
        return sparse, dense + self.dense_bias[:, None, None]
