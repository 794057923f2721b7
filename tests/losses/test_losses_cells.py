"""BloodCellSAM2 losses: contour curvature (L_mor), temporal InfoNCE (L_temp) and their weighted sum."""

import math

import pytest
import torch
from monai.losses import DiceFocalLoss

from monaiseg.losses import BloodCellLoss, ContourCurvatureLoss, TemporalContrastiveLoss


def disc(radius: float, size: int = 48, bumps: float = 0.0, lobes: int = 8) -> torch.Tensor:
    """Anti-aliased disc (1, 1, size, size) in [0, 1]; ``bumps`` modulates the radius by cos(lobes * angle)."""
    yy, xx = torch.meshgrid(torch.arange(size) - size / 2 + 0.5, torch.arange(size) - size / 2 + 0.5, indexing="ij")
    edge = radius * (1 + bumps * torch.cos(lobes * torch.atan2(yy, xx)))
    return torch.clamp(edge - torch.sqrt(xx**2 + yy**2) + 0.5, 0, 1)[None, None]


def test_curvature_orders_shapes_and_matches_one_over_r_squared():
    loss = ContourCurvatureLoss(sigmoid=False)
    small, big, star = loss(disc(6)).item(), loss(disc(14)).item(), loss(disc(14, bumps=0.15)).item()
    assert big < small and big < star
    # kappa = 1/r on a circle: L ~ 1/r^2 (the smoothed pixel grid adds a little)
    assert 1 / 14**2 < big < 1.5 / 14**2 and 1 / 6**2 < small < 1.3 / 6**2


def test_curvature_constant_masks_are_zero_and_gradients_finite():
    loss = ContourCurvatureLoss(sigmoid=False, reduction="none")
    flat = torch.cat([torch.zeros(1, 1, 16, 16), torch.ones(1, 1, 16, 16)]).requires_grad_()
    value = loss(flat)
    value.sum().backward()
    assert torch.equal(value.detach(), torch.zeros(2)) and torch.isfinite(flat.grad).all()

    logits = (disc(8, size=24) * 20 - 10).requires_grad_()
    ContourCurvatureLoss()(logits).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


def test_curvature_clips_score_each_frame():
    frames = torch.cat([disc(4, 24), disc(8, 24), torch.zeros(1, 1, 24, 24)])  # (3, 1, H, W)
    clip = frames.permute(1, 2, 3, 0)[None]  # (1, 1, H, W, 3)
    per_frame = ContourCurvatureLoss(sigmoid=False, reduction="none")
    expected = per_frame(frames)
    assert torch.allclose(per_frame(clip), expected[None])
    assert ContourCurvatureLoss(sigmoid=False, reduction="sum")(clip).item() == pytest.approx(expected.sum().item())
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        per_frame(torch.zeros(1, 2, 8, 8))


def clip_inputs(emb):
    """memory (K, C, 1, 1, T) from embeddings (K, T, C), masks all ones (K, 1, 2, 2, T)."""
    memory = torch.tensor(emb, dtype=torch.float32).permute(0, 2, 1)[:, :, None, None]
    return memory, torch.ones(memory.shape[0], 1, 2, 2, memory.shape[-1])


def test_temporal_hand_computed_value():
    # cell 0: [1, 0] -> [1, 1]; cell 1: [0, 1] -> [0, 1]; temperature 0.5
    memory, masks = clip_inputs([[[1, 0], [1, 1]], [[0, 1], [0, 1]]])
    c = math.sqrt(0.5) / 0.5  # cos([1,0],[1,1]) / tau
    anchor0 = math.log(1 + math.exp(0 - c))  # logits [c, 0], target 0
    anchor1 = math.log(1 + math.exp(c - 2))  # logits [c, 2], target 1
    value = TemporalContrastiveLoss(temperature=0.5)(memory, masks)
    assert value.item() == pytest.approx((anchor0 + anchor1) / 2, rel=1e-5)


def test_temporal_prefers_consistent_identities_and_pools_masks():
    consistent, masks = clip_inputs([[[1, 0], [1, 0], [1, 0]], [[0, 1], [0, 1], [0, 1]]])
    swapped, _ = clip_inputs([[[1, 0], [0, 1], [1, 0]], [[0, 1], [1, 0], [0, 1]]])
    loss = TemporalContrastiveLoss(0.1)
    assert loss(consistent, masks).item() == pytest.approx(math.log(1 + math.exp(-10)), abs=1e-6)
    assert loss(swapped, masks).item() == pytest.approx(math.log(1 + math.exp(10)), rel=1e-4)
    # memory 2x2, masks 4x4 area-pooled: cell 0 covers only the top-left memory pixel, holding its features
    memory = torch.zeros(2, 2, 2, 2, 2)
    memory[0, :, 0, 0] = torch.tensor([1.0, 0.0])[:, None]
    memory[0, :, 1, 1] = torch.tensor([0.0, 1.0])[:, None]  # outside cell 0's mask: ignored
    memory[1] = torch.tensor([0.0, 1.0])[:, None, None, None]
    cells = torch.zeros(2, 1, 4, 4, 2)
    cells[0, :, :2, :2] = 1
    cells[1, :, 2:, 2:] = 1
    assert loss(memory, cells).item() == pytest.approx(math.log(1 + math.exp(-10)), abs=1e-6)


def test_temporal_skips_absent_cells_and_returns_differentiable_zero():
    # 3 cells, 2 frames; cell 2 is absent at t=0 (a negative only) and its t=0 features are garbage
    memory, masks = clip_inputs([[[1, 0, 0], [1, 0, 0]], [[0, 1, 0], [0, 1, 0]], [[9, 9, 9], [0, 0, 1]]])
    masks[2, ..., 0] = 0
    memory.requires_grad_()
    value = TemporalContrastiveLoss(1.0)(memory, masks)
    assert value.item() == pytest.approx(math.log(1 + 2 * math.exp(-1)), rel=1e-5)  # logits [1, 0, 0] per anchor
    value.backward()
    assert memory.grad[:2].abs().sum() > 0 and torch.isfinite(memory.grad).all()
    assert memory.grad[2, ..., 0].abs().sum() == 0
    # only one cell at t+1: nothing to contrast
    lonely = memory.detach()[:1].requires_grad_()
    zero = TemporalContrastiveLoss()(lonely, masks[:1])
    zero.backward()
    assert zero.item() == 0 and torch.equal(lonely.grad, torch.zeros_like(lonely))
    with pytest.raises(ValueError, match="differ in cells"):
        TemporalContrastiveLoss()(memory, masks[:2])


def test_bloodcell_loss_combines_weighted_terms():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 16, 16, 3, requires_grad=True)
    target = (torch.rand(2, 1, 16, 16, 3) > 0.5).float()
    memory = torch.randn(2, 4, 4, 4, 3, requires_grad=True)
    seg = DiceFocalLoss(sigmoid=True, gamma=2.0)(logits, target)
    temp = TemporalContrastiveLoss(0.1)(memory, target)
    mor = ContourCurvatureLoss()(logits)
    loss = BloodCellLoss(seg_weight=1.0, temp_weight=0.5, mor_weight=0.2)
    total = loss({"logits": logits, "memory": memory}, target)
    assert total.item() == pytest.approx((seg + 0.5 * temp + 0.2 * mor).item(), rel=1e-5)
    assert loss.last_terms == pytest.approx({"seg": seg.item(), "temp": temp.item(), "mor": mor.item()}, rel=1e-5)
    total.backward()
    assert memory.grad.abs().sum() > 0 and logits.grad.abs().sum() > 0

    static = BloodCellLoss(mor_weight=0.0)  # image stage without memory: L_temp absent too
    assert static(logits[..., 0], target[..., 0]).item() == pytest.approx(
        DiceFocalLoss(sigmoid=True)(logits[..., 0], target[..., 0]).item(), rel=1e-6
    )
    assert set(static.last_terms) == {"seg"}
    no_temp = BloodCellLoss(temp_weight=0.0)
    no_temp({"logits": logits, "memory": memory}, target)
    assert set(no_temp.last_terms) == {"seg", "mor"}


def test_bloodcell_loss_errors():
    loss = BloodCellLoss()
    with pytest.raises(FloatingPointError, match="NaN loss: term 'seg'"):
        loss(torch.full((1, 1, 8, 8), float("nan")), torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="differ in shape"):
        loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))
