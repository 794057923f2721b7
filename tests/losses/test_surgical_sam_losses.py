"""SurgicalSAM losses: InfoNCE prototype contrastive loss and the class prompt loss (dice + contrastive)."""

from __future__ import annotations

import math

import pytest
import torch

from monaiseg.losses.surgical_sam import ClassPromptLoss, PrototypeContrastiveLoss
from monaiseg.networks.prototype_prompt import LearnablePrototypes


def test_infonce_matches_the_hand_computed_value():
    """Prototypes p1 = (1, 0), p2 = (0, 1); samples e1 = (1, 0) of class 1, e2 = (1, 1) of class 2,
    e3 = (0, 2) of class 2. Cosine similarities / t, t = 0.5: s(p1) = (2, sqrt2, 0), s(p2) = (0, sqrt2, 2).
    Pairs: (p1, e1): -log(e^2 / (e^2 + e^sqrt2 + e^0)); (p2, e2): -log(e^sqrt2 / (e^sqrt2 + e^0));
    (p2, e3): -log(e^2 / (e^2 + e^0)); loss = their mean."""
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    samples = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    r = math.sqrt(2)
    pairs = [
        -math.log(math.e**2 / (math.e**2 + math.e**r + 1)),
        -math.log(math.e**r / (math.e**r + 1)),
        -math.log(math.e**2 / (math.e**2 + 1)),
    ]
    loss = PrototypeContrastiveLoss(temperature=0.5)(prototypes, samples, torch.tensor([1, 2, 2]))
    assert loss.item() == pytest.approx(sum(pairs) / 3, rel=1e-5)
    assert PrototypeContrastiveLoss().temperature == 0.07


def test_infonce_edge_cases_have_finite_gradients():
    prototypes = torch.randn(3, 4, requires_grad=True)
    samples = torch.randn(2, 4)
    loss_fn = PrototypeContrastiveLoss()
    only_class_1 = loss_fn(prototypes, samples, torch.tensor([1, 1]))  # anchor 1 has no negative
    assert only_class_1.item() == pytest.approx(0.0, abs=1e-6)
    only_class_1.backward()
    assert torch.isfinite(prototypes.grad).all()
    assert loss_fn(prototypes, samples[:0], torch.tensor([], dtype=torch.long)).item() == 0.0


def test_class_prompt_loss_is_dice_plus_contrastive_and_zero_without_rows():
    prototypes = LearnablePrototypes(2, 4)
    loss_fn = ClassPromptLoss(prototypes, temperature=0.1)
    pred = torch.full((1, 1, 2, 2), 50.0)  # sigmoid ~ 1 everywhere
    target = {
        "masks": torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]]),
        "class_embeddings": torch.randn(1, 4),
        "class_ids": torch.tensor([2]),
    }
    dice = 1 - 2 * 2 / (4 + 2 + 2e-3)  # 1 - 2 sum(pt) / (sum p^2 + sum t^2 + 2 eps)
    contrastive = PrototypeContrastiveLoss(0.1)(prototypes(), target["class_embeddings"], target["class_ids"])
    assert loss_fn(pred, target).item() == pytest.approx(dice + contrastive.item(), rel=1e-5)
    empty = loss_fn(pred[:0], {k: v[:0] for k, v in target.items()})
    empty.backward()
    assert empty.item() == 0.0 and prototypes.class_embeddings.weight.grad is not None
