"""Simulated clicks and boxes (monaiseg.transforms.clicks) on hand-made masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monaiseg.transforms.clicks import (
    jittered_box,
    jittered_boxes,
    sample_error_click,
    sample_error_clicks,
    sample_foreground_click,
    sample_foreground_clicks,
)


def grid(rows: int, cols: int, on: list[tuple[int, int]]) -> np.ndarray:
    mask = np.zeros((rows, cols), bool)
    for r, c in on:
        mask[r, c] = True
    return mask


def test_single_missed_pixel_gives_a_positive_click_at_x_column_y_row():
    gt = grid(3, 5, [(1, 3)])
    pred = np.zeros_like(gt)
    assert sample_error_click(pred, gt, np.random.default_rng(0)) == (3, 1, 1)


def test_spill_larger_than_miss_gives_a_negative_click_in_the_spill():
    gt = grid(4, 4, [(0, 0), (0, 1)])  # pred misses (0, 1), spills on 3 pixels of row 3
    pred = grid(4, 4, [(0, 0), (3, 0), (3, 1), (3, 2)])
    for seed in range(10):
        x, y, label = sample_error_click(pred, gt, np.random.default_rng(seed))
        assert label == 0 and y == 3 and x in (0, 1, 2)


def test_miss_larger_than_spill_gives_a_positive_click_in_the_miss():
    gt = grid(4, 4, [(1, 1), (1, 2), (2, 1), (2, 2)])
    pred = grid(4, 4, [(1, 1), (0, 3)])  # misses 3 pixels, spills on 1
    for seed in range(10):
        x, y, label = sample_error_click(pred, gt, np.random.default_rng(seed))
        assert label == 1 and (y, x) in {(1, 2), (2, 1), (2, 2)}


def test_tie_goes_to_the_missed_object():
    gt = grid(2, 2, [(0, 0)])
    pred = grid(2, 2, [(1, 1)])
    assert sample_error_click(pred, gt, np.random.default_rng(3)) == (0, 0, 1)


def test_no_error_gives_a_padding_point():
    gt = grid(3, 3, [(1, 1)])
    assert sample_error_click(gt.copy(), gt, np.random.default_rng(0)) == (0, 0, -1)
    empty = np.zeros((3, 3), bool)
    assert sample_error_click(empty, empty, np.random.default_rng(0)) == (0, 0, -1)


def test_same_seed_same_clicks_other_seed_other_clicks():
    gt = np.zeros((32, 32), bool)
    gt[4:28, 4:28] = True
    pred = np.zeros_like(gt)
    first = [sample_error_click(pred, gt, np.random.default_rng(7)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    rng_a, rng_b = np.random.default_rng(1), np.random.default_rng(2)
    a = [sample_error_click(pred, gt, rng_a) for _ in range(5)]
    b = [sample_error_click(pred, gt, rng_b) for _ in range(5)]
    assert a != b and all(gt[y, x] and label == 1 for x, y, label in a + b)


def test_foreground_click_lies_on_the_object_and_refuses_empty_masks():
    gt = grid(5, 5, [(4, 2)])
    assert sample_foreground_click(gt, np.random.default_rng(0)) == (2, 4, 1)
    with pytest.raises(ValueError, match="empty object"):
        sample_foreground_click(np.zeros((5, 5), bool), np.random.default_rng(0))


def test_batched_clicks_shapes_and_labels():
    gt = torch.zeros(3, 8, 8, dtype=torch.bool)
    gt[:, 2:5, 2:5] = True
    pred = torch.zeros_like(gt)
    pred[1] = gt[1]  # object 1 already perfect
    pred[2, 0, :] = True  # object 2: misses 9, spills 8 -> positive
    points, labels = sample_error_clicks(pred, gt, np.random.default_rng(0))
    assert points.shape == (3, 1, 2) and points.dtype == torch.float32
    assert labels.tolist() == [[1], [-1], [1]]
    first, first_labels = sample_foreground_clicks(gt, np.random.default_rng(0))
    assert first.shape == (3, 1, 2) and first_labels.tolist() == [[1], [1], [1]]
    assert all(gt[i, int(y), int(x)] for i, (x, y) in enumerate(first[:, 0].tolist()))


def test_boxes_tight_and_shifted_within_limits():
    gt = np.zeros((64, 64), bool)
    gt[10:31, 20:51] = True  # rows 10..30, cols 20..50
    assert jittered_box(gt) == (20.0, 10.0, 50.0, 30.0)
    for seed in range(20):
        x0, y0, x1, y1 = jittered_box(gt, np.random.default_rng(seed), max_shift=5)
        assert x1 - x0 == 30 and y1 - y0 == 20  # moved as a whole, not resized
        assert abs(x0 - 20) <= 5 and abs(y0 - 10) <= 5
    small = grid(8, 8, [(3, 3), (3, 4)])  # shorter side 0 px: never shifted
    assert jittered_box(small, np.random.default_rng(0)) == (3.0, 3.0, 4.0, 3.0)
    edge = np.zeros((16, 16), bool)
    edge[0:8, 0:8] = True
    for seed in range(10):
        box = jittered_box(edge, np.random.default_rng(seed))
        assert min(box) >= 0 and max(box) <= 15
    boxes = jittered_boxes(torch.as_tensor(np.stack([gt, gt])))
    assert boxes.shape == (2, 4) and boxes[0].tolist() == [20.0, 10.0, 50.0, 30.0]
