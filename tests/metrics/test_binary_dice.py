"""`binary_dice`: the one Dice of two masks for scripts and tests, hand-computed values and its stated rule
for empty masks (both empty: 1.0; one empty: 0.0)."""

import numpy as np
import pytest
import torch

from monaiseg.metrics import binary_dice


def test_hand_computed():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[0, :3] = True  # 3 px
    b[0, 1:] = True  # 3 px, 2 shared
    assert binary_dice(a, b) == 2 * 2 / (3 + 3)  # 2/3
    a3 = np.zeros((2, 3, 4), np.uint8)
    b3 = np.zeros((2, 3, 4), np.uint8)
    a3[0] = 1  # 12 voxels
    b3[0, 0] = 1  # 4 voxels, all in a
    assert binary_dice(a3, b3) == 2 * 4 / 16  # 0.5
    assert binary_dice(a3, a3) == 1.0
    assert binary_dice(a3, 1 - a3) == 0.0  # disjoint


def test_empty_masks():
    empty = np.zeros((5, 5), bool)
    full = np.ones((5, 5), bool)
    assert binary_dice(empty, empty) == 1.0  # both agree nothing is there
    assert binary_dice(torch.zeros(3, 3, 3), torch.zeros(3, 3, 3)) == 1.0
    assert binary_dice(empty, full) == 0.0 and binary_dice(full, empty) == 0.0
    assert binary_dice(np.zeros(0), np.zeros(0)) == 1.0  # no elements at all


def test_foreground_is_above_zero():
    """Label maps and logits: every value > 0 is foreground, 0 and negative ones are not."""
    labels = np.array([0, 1, 2, 3])
    assert binary_dice(labels, labels > 0) == 1.0
    logits = torch.tensor([-2.0, -0.1, 0.0, 0.5, 3.0])
    truth = torch.tensor([False, False, False, True, False])
    assert binary_dice(logits, truth) == 2 * 1 / (2 + 1)


def test_numpy_torch_and_mixed_give_one_answer():
    rng = np.random.default_rng(0)
    a, b = rng.random((6, 7, 3)) > 0.5, rng.random((6, 7, 3)) > 0.4
    both, sizes = int((a & b).sum()), int(a.sum() + b.sum())
    expected = 2 * both / sizes
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    for x, y in ((a, b), (ta, tb), (a, tb), (ta, b), (ta.to(torch.uint8), tb.float())):
        result = binary_dice(x, y)
        assert type(result) is float and result == expected


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match=r"different shapes \(2, 3\) and \(3, 2\)"):
        binary_dice(np.ones((2, 3)), torch.ones(3, 2))
