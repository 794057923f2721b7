"""SurgicalSAM's losses (docs/methods.md#surgicalsam-and-ibr): contrastive prototype learning (InfoNCE with the class
prototypes as anchors and class embeddings as samples, temperature 0.07) plus the Dice loss of
the class-prompted masks.

InfoNCE as upstream computes it (pytorch-metric-learning's NTXentLoss with `ref_emb`): cosine
similarities s / t between every prototype p_c (anchor) and every class embedding e_r (sample of
class y_r); each positive pair (c, r), y_r = c, contributes
    -log( exp(s_cr / t) / (exp(s_cr / t) + sum_{r': y_r' != c} exp(s_cr' / t)) )
and the loss is the mean over positive pairs (0 without any positive pair; a pair whose anchor has
no negative sample contributes 0).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn


class PrototypeContrastiveLoss(nn.Module):
    """InfoNCE between prototypes (C, D) and class embeddings (R, D) of classes `labels` (R,) in 1..C."""

    def __init__(self, temperature: float = 0.07):
        super().__init__()
        self.temperature = temperature

    def forward(self, prototypes: torch.Tensor, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = F.normalize(prototypes, dim=-1) @ F.normalize(embeddings, dim=-1).T / self.temperature  # (C, R)
        classes = torch.arange(1, prototypes.shape[0] + 1, device=labels.device)
        positive = classes[:, None] == labels[None, :]  # (C, R)
        if not positive.any():
            return logits.sum() * 0.0
        # (C, R): only samples of other classes; a finite fill keeps anchors without negatives NaN-free
        negatives = logits.masked_fill(positive, -1e4)
        # per positive pair: logsumexp over {s_cr} + negatives of c, minus s_cr
        denominator = torch.logaddexp(logits, torch.logsumexp(negatives, dim=1, keepdim=True))
        return (denominator - logits)[positive].mean()


class ClassPromptLoss(nn.Module):
    """SurgicalSAM's training loss: Dice (sigmoid) of the class-prompted mask logits + InfoNCE.

    `prototypes`: the model's `LearnablePrototypes` (its weight is the anchor set). Call with
    pred (R, 1, H, W) logits and target {"masks": (R, 1, H, W) binary, "class_embeddings": (R, D),
    "class_ids": (R,)} (as `PrepareClassPromptBatch` makes them). The Dice is upstream's
    (mmseg V-Net form: 1 - 2 sum(p t) / (sum p^2 + sum t^2 + 2e-3), mean over rows).
    """

    def __init__(self, prototypes: nn.Module, temperature: float = 0.07, contrastive_weight: float = 1.0):
        super().__init__()
        self.prototypes = [prototypes]  # a reference, not a child: the model owns and saves it
        self.dice = DiceLoss(sigmoid=True, squared_pred=True, smooth_nr=0.0, smooth_dr=2e-3)
        self.contrastive = PrototypeContrastiveLoss(temperature)
        self.contrastive_weight = contrastive_weight

    def forward(self, pred: torch.Tensor, target: Mapping[str, torch.Tensor]) -> torch.Tensor:
        prototypes = self.prototypes[0]()
        if pred.shape[0] == 0:  # no instrument in the batch (and an empty image bank)
            return prototypes.sum() * 0.0
        seg = self.dice(pred, target["masks"].to(pred.dtype))
        return seg + self.contrastive_weight * self.contrastive(
            prototypes, target["class_embeddings"], target["class_ids"]
        )
