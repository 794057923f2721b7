import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor, decollate_batch, list_data_collate
from monai.handlers import IgniteMetricHandler, from_engine
from monai.networks import one_hot

from monaiseg.metrics import DiceScore, NormalizedSurfaceDice, label_volume_scores

ANISO = (1.5, 0.4, 0.4)


def cube_pair():
    """GT cube [2:6]^3 (64 voxels) and the same cube shifted by one voxel along x, plus empty-case labels.

    Label 1: overlap 3*4*4 = 48 voxels -> DSC = 2*48 / (64+64) = 0.75.
    Boundary voxels (6-connected erosion): 4^3 - 2^3 = 56 per cube, 112 in all. Pred -> GT distances:
    36 shared boundary voxels at 0; the 4 inner voxels of the pred face x=3 (GT interior) at
    min(sx, sy, sz); the pred face x=6 (16 voxels) at sx. GT -> pred is symmetric.
    Label 2 absent from both; label 3 only in pred; label 4 only in GT.
    """
    gt = np.zeros((10, 10, 10), np.int64)
    pred = gt.copy()
    gt[2:6, 2:6, 2:6] = 1
    pred[3:7, 2:6, 2:6] = 1
    pred[0, 0, 0] = 3
    gt[9, 9, 9] = 4
    return pred, gt


def test_label_volume_scores_known_values():
    pred, gt = cube_pair()
    scores = label_volume_scores(pred, gt, [1, 2, 3, 4], spacing=ANISO)  # tolerance 2 mm >= sx = 1.5
    assert scores == {
        1: {"dsc": 0.75, "nsd": 1.0},
        2: {"dsc": 1.0, "nsd": 1.0},
        3: {"dsc": 0.0, "nsd": 0.0},
        4: {"dsc": 0.0, "nsd": 0.0},
    }
    # tolerance 0.5 mm: the shared 72 and the 2*4 inner voxels at 0.4 mm count, the 2*16 at 1.5 mm do not
    assert label_volume_scores(pred, gt, [1], ANISO, tolerance_mm=0.5)[1]["nsd"] == pytest.approx(80 / 112, abs=1e-6)
    # unit spacing: the inner voxels are 1 mm away and no longer count
    unit = label_volume_scores(pred, gt, [1], (1, 1, 1), tolerance_mm=0.5)
    assert unit[1]["nsd"] == pytest.approx(72 / 112, abs=1e-6)


def test_label_volume_scores_2d_torch():
    # squares [2:6]^2 and shifted by one along x: overlap 12 -> DSC 24/32; boundary 12 px each; pred -> GT:
    # 6 shared at 0, 2 at sy = 0.4, 4 at sx = 1.5 (GT -> pred symmetric) -> NSD at 0.5 mm = 16/24
    gt = torch.zeros(8, 8, dtype=torch.int32)
    pred = gt.clone()
    gt[2:6, 2:6] = 1
    pred[3:7, 2:6] = 1
    s = label_volume_scores(pred, gt, [1], spacing=(1.5, 0.4), tolerance_mm=0.5)[1]
    assert s["dsc"] == 0.75 and s["nsd"] == pytest.approx(2 / 3, abs=1e-6)


def test_label_volume_scores_bad_shapes():
    with pytest.raises(ValueError, match="same 2D or 3D shape"):
        label_volume_scores(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)), [1], (1, 1, 1))


def test_subvoxel_nsd():
    pred, gt = cube_pair()
    # boundary areas: tolerance 2 mm still covers every element; 0.5 mm is between the voxel-count value and 1
    subvoxel = label_volume_scores(pred, gt, [1, 2], ANISO, use_subvoxels=True)
    assert subvoxel == label_volume_scores(pred, gt, [1, 2], ANISO)
    assert 80 / 112 < label_volume_scores(pred, gt, [1], ANISO, 0.5, use_subvoxels=True)[1]["nsd"] < 1


def onehot_item(labels: np.ndarray, spacing) -> MetaTensor:
    """(5, X, Y, Z) one-hot MetaTensor (labels 0-4) with the given voxel size in its affine."""
    affine = torch.diag(torch.tensor([*spacing, 1.0], dtype=torch.float64))
    return MetaTensor(one_hot(torch.as_tensor(labels)[None], num_classes=5, dim=0), affine=affine)


def cube_batch():
    """Two cases, the same masks, voxel sizes ANISO and 1 mm; batched as the evaluator's collate does."""
    pred, gt = cube_pair()
    items = [{"pred": onehot_item(pred, sp), "label": onehot_item(gt, sp)} for sp in (ANISO, (1.0, 1.0, 1.0))]
    return list_data_collate(items)


def test_metric_classes_read_spacing_from_label_meta_and_match_functional():
    batch = cube_batch()
    nsd, dice = NormalizedSurfaceDice(tolerance_mm=0.5), DiceScore()
    nsd(batch["pred"], batch["label"])
    dice(batch["pred"], batch["label"])
    expected_nsd = torch.tensor([[80 / 112, 1, 0, 0], [72 / 112, 1, 0, 0]])
    assert torch.allclose(nsd.get_buffer(), expected_nsd, atol=1e-6)
    assert torch.equal(dice.get_buffer(), torch.tensor([[0.75, 1, 0, 0], [0.75, 1, 0, 0]]))
    assert nsd.aggregate().item() == pytest.approx(expected_nsd.mean().item(), abs=1e-6)

    pred, gt = cube_pair()
    for b, spacing in enumerate((ANISO, (1, 1, 1))):
        scores = label_volume_scores(pred, gt, [1, 2, 3, 4], spacing, tolerance_mm=0.5)
        assert [scores[c]["nsd"] for c in (1, 2, 3, 4)] == nsd.get_buffer()[b].tolist()
        assert [scores[c]["dsc"] for c in (1, 2, 3, 4)] == dice.get_buffer()[b].tolist()


def test_nsd_decollated_list_explicit_spacing_and_per_class_tolerance():
    batch = cube_batch()
    preds, labels = decollate_batch(batch["pred"]), decollate_batch(batch["label"])
    from_meta = NormalizedSurfaceDice(0.5)(preds, labels)
    assert torch.allclose(from_meta[:, 0], torch.tensor([80 / 112, 72 / 112]), atol=1e-6)
    explicit = NormalizedSurfaceDice(0.5, spacing=(1, 1, 1))(preds, labels)  # overrides the affine
    assert torch.allclose(explicit[:, 0], torch.tensor([72 / 112, 72 / 112]), atol=1e-6)
    per_class = NormalizedSurfaceDice([2.0, 0.5, 0.5, 0.5])(batch["pred"], batch["label"])
    assert torch.allclose(per_class[:, 0], torch.ones(2))


def test_ignite_handler_with_save_details():
    batch = cube_batch()
    engine = Engine(lambda e, b: b)
    for name, metric in (("nsd", NormalizedSurfaceDice(0.5)), ("dice", DiceScore())):
        handler = IgniteMetricHandler(metric_fn=metric, output_transform=from_engine(["pred", "label"]))
        handler.attach(engine, name)  # save_details=True by default
    engine.run([batch])
    assert engine.state.metrics["dice"] == pytest.approx(0.4375)  # mean of (0.75, 1, 0, 0)
    assert engine.state.metrics["nsd"] == pytest.approx((80 / 112 + 72 / 112 + 2) / 8, abs=1e-6)
    assert engine.state.metric_details["nsd"].shape == (2, 4)
