"""L_temp: InfoNCE on the memory features of tracked cells in consecutive frames (docs/methods.md#bloodcellsam2)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TemporalContrastiveLoss(nn.Module):
    """InfoNCE pulling a cell's memory embedding at t+1 towards its embedding at t, away from other cells.

    Each cell's embedding per frame is the mean of its memory features over its ground-truth mask
    (the mask area-pooled to the memory resolution). For every pair of consecutive frames (t, t+1),
    the anchors are the cells present in both; an anchor's positive is the same cell at t+1 and its
    negatives the other cells present at t+1; logits are cosine similarities / ``temperature``.
    The loss is the cross-entropy averaged over all anchors of all pairs, and a differentiable zero
    when no pair has an anchor and at least 2 cells at t+1.
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    def forward(self, memory: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """memory: (K, C, h, w, T) per-cell memory features; masks: (K, 1, H, W, T) binary, row k = cell k."""
        if memory.ndim != 5 or masks.ndim != 5 or masks.shape[1] != 1:
            raise ValueError(
                f"expected memory (K, C, h, w, T) and masks (K, 1, H, W, T), got {tuple(memory.shape)} "
                f"and {tuple(masks.shape)}"
            )
        k, _, h, w, t = memory.shape
        if masks.shape[0] != k or masks.shape[-1] != t:
            raise ValueError(
                f"memory {tuple(memory.shape)} and masks {tuple(masks.shape)} differ in cells K or frames T"
            )
        frames = masks.to(memory.dtype).permute(0, 4, 1, 2, 3).flatten(0, 1)  # (K*T, 1, H, W)
        weights = F.interpolate(frames, size=(h, w), mode="area").view(k, t, h, w)
        present = weights.sum((-2, -1)) > 0  # (K, T)
        pooled = torch.einsum("kchwt,kthw->kct", memory, weights)
        emb = F.normalize(pooled / weights.sum((-2, -1)).clamp_min(1e-12)[:, None], dim=1)  # (K, C, T)

        total, anchors = memory.sum() * 0.0, 0
        for i in range(t - 1):
            candidates = present[:, i + 1].nonzero().squeeze(1)
            anchor_ids = (present[:, i] & present[:, i + 1]).nonzero().squeeze(1)
            if len(candidates) < 2 or len(anchor_ids) == 0:
                continue
            logits = emb[anchor_ids, :, i] @ emb[candidates, :, i + 1].T / self.temperature  # (A, N)
            target = torch.searchsorted(candidates, anchor_ids)
            total = total + F.cross_entropy(logits, target, reduction="sum")
            anchors += len(anchor_ids)
        return total / max(anchors, 1)
