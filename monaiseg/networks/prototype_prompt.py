"""SurgicalSAM's prototype-based class prompt encoder (docs/methods.md#surgicalsam-and-ibr) and the class embeddings
that its contrastive prototype loss uses as samples.

`LearnablePrototypes` holds one D-dim prototype per class; `PrototypePromptEncoder` turns an image
embedding and a queried class into SAM prompt embeddings without points or boxes:
1. similarity s_c(n) = <f(n), p_c> of every embedding location n with every prototype p_c;
2. class-activated features a_c(n) = f(n) (1 + s_c(n));
3. dense prompt: two 1x1 convolutions (D -> hidden -> D, ReLU) on a_c of the queried class;
4. sparse prompt: per class, two 1x1 Conv1d over the h*w locations (h*w -> hidden -> T tokens) of
   a_c, plus a fixed positive embedding for the queried class and a fixed negative embedding for
   the others (initialised from SAM's positive / negative point embeddings and frozen): C * T tokens.
Child names give the keys of the released `model_ckp.pth` sub-dicts (`dense_fc_1`, `dense_fc_2`,
`sparse_fc_1`, `sparse_fc_2`, `pn_cls_embeddings.{0: negative, 1: positive}`, `class_embeddings`).
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from segment_anything.modeling import PromptEncoder
from torch import nn


class LearnablePrototypes(nn.Module):
    """One learnable prototype per class: forward() -> (C, D), row c - 1 for class id c."""

    def __init__(self, num_classes: int = 7, feat_dim: int = 256):
        super().__init__()
        self.class_embeddings = nn.Embedding(num_classes, feat_dim)

    def forward(self) -> torch.Tensor:
        return self.class_embeddings.weight


class PrototypePromptEncoder(nn.Module):
    """Dense and sparse SAM prompt embeddings for queried classes (module docstring).

    `size`: side of the (square) image embedding, 64 for SAM at 1024 px; `num_tokens`: T sparse
    tokens per class (EndoVis2018: 2, EndoVis2017: 4).
    """

    def __init__(
        self,
        feat_dim: int = 256,
        hidden_dim_dense: int = 128,
        hidden_dim_sparse: int = 128,
        size: int = 64,
        num_tokens: int = 2,
    ):
        super().__init__()
        self.size = size
        self.dense_fc_1 = nn.Conv2d(feat_dim, hidden_dim_dense, 1)
        self.dense_fc_2 = nn.Conv2d(hidden_dim_dense, feat_dim, 1)
        self.sparse_fc_1 = nn.Conv1d(size * size, hidden_dim_sparse, 1)
        self.sparse_fc_2 = nn.Conv1d(hidden_dim_sparse, num_tokens, 1)
        self.pn_cls_embeddings = nn.ModuleList(nn.Embedding(num_tokens, feat_dim) for _ in range(2))
        self.pn_cls_embeddings.requires_grad_(False)

    @torch.no_grad()
    def init_from_sam(self, prompt_encoder: PromptEncoder) -> None:
        """Negative / positive embeddings := SAM's negative / positive point embeddings, repeated T times."""
        for i in (0, 1):
            weight = cast(nn.Embedding, self.pn_cls_embeddings[i]).weight
            weight.copy_(prompt_encoder.point_embeddings[i].weight.expand_as(weight))

    def forward(
        self, embeddings: torch.Tensor, prototypes: torch.Tensor, class_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image embeddings (B, D, h, w), prototypes (C, D), queried class ids (B, K) in 1..C ->
        dense (B, K, D, h, w) and sparse (B, K, C * T, D) prompt embeddings."""
        batch, dim, height, width = embeddings.shape
        num_classes = prototypes.shape[0]
        if (height, width) != (self.size, self.size):
            raise ValueError(f"prompt encoder built for {self.size}x{self.size} image embeddings, got {height}x{width}")
        if class_ids.ndim != 2 or class_ids.shape[0] != batch:
            raise ValueError(f"class_ids must be (B, K) with B = {batch}, got {tuple(class_ids.shape)}")
        if class_ids.numel() and (class_ids.min() < 1 or class_ids.max() > num_classes):
            raise ValueError(f"class ids must lie in 1..{num_classes}, got {class_ids.unique().tolist()}")
        feats = embeddings.flatten(2).transpose(1, 2)  # (B, N, D)
        similarity = torch.einsum("bnd,cd->bcn", feats, prototypes)
        activated = feats[:, None] * (1 + similarity[..., None])  # (B, C, N, D)
        index = (class_ids - 1).long()
        queried = activated[torch.arange(batch, device=index.device)[:, None], index]  # (B, K, N, D)
        queried = queried.transpose(2, 3).reshape(-1, dim, height, width)
        dense = self.dense_fc_2(F.relu(self.dense_fc_1(queried))).view(batch, -1, dim, height, width)
        tokens = self.sparse_fc_2(F.relu(self.sparse_fc_1(activated.flatten(0, 1))))  # (B * C, T, D)
        tokens = tokens.view(batch, 1, num_classes, -1, dim)
        is_query = F.one_hot(index, num_classes).to(tokens.dtype)[..., None, None]  # (B, K, C, 1, 1)
        negative, positive = (cast(nn.Embedding, e).weight.detach() for e in self.pn_cls_embeddings)
        sparse = tokens + positive * is_query + negative * (1 - is_query)  # (B, K, C, T, D)
        return dense, sparse.flatten(2, 3)


def class_embeddings_from_masks(
    embeddings: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean image embedding under each class mask: embeddings (B, D, h, w), class-id maps
    (B, 1, H, W) or (B, H, W) with 0 background -> (B, C, D) class embeddings and (B, C) presence.

    The mask is brought to the h x w embedding grid by area averaging, and each location is
    weighted by the fraction of its cell the class covers (the mean of the upsampled embedding
    over the mask pixels); an absent class gets a zero row and presence False.
    """
    if labels.ndim == 4:
        labels = labels[:, 0]
    labels = labels.long()
    if labels.numel() and (labels.min() < 0 or labels.max() > num_classes):
        raise ValueError(f"class-id maps must hold 0..{num_classes}, got values {labels.unique().tolist()}")
    onehot = F.one_hot(labels, num_classes + 1)[..., 1:]  # (B, H, W, C)
    onehot = onehot.permute(0, 3, 1, 2).to(embeddings.dtype)
    weights = F.adaptive_avg_pool2d(onehot, (embeddings.shape[-2], embeddings.shape[-1])).flatten(2)  # (B, C, h * w)
    total = weights.sum(-1, keepdim=True)
    means = torch.einsum("bcn,bdn->bcd", weights, embeddings.flatten(2)) / total.clamp_min(1e-12)
    return means, onehot.flatten(2).sum(-1) > 0
