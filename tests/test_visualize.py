"""Overlay montages."""

from __future__ import annotations

import cv2
import numpy as np

from monaiseg.visualize import overlay, save_montage


def test_overlay_colours_prediction_and_outlines_truth():
    image = np.full((10, 10), 0.5)
    pred = np.zeros((10, 10), int)
    pred[2:5, 2:5] = 1
    gt = np.zeros((10, 10), int)
    gt[6:9, 6:9] = 2
    rgb = overlay(image, pred, gt, alpha=1.0)
    assert rgb.shape == (10, 10, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[3, 3]) == (230, 25, 75)  # label 1 colour, fully opaque
    assert tuple(rgb[0, 0]) == (127, 127, 127)  # untouched grey
    assert tuple(rgb[6, 6]) == (255, 255, 255)  # truth contour
    assert tuple(rgb[7, 7]) == (127, 127, 127)  # inside the contour stays grey


def test_montage_spans_the_slices_with_foreground(tmp_path):
    volume = np.random.default_rng(0).random((12, 10, 20))
    gt = np.zeros((12, 10, 20), int)
    gt[3:6, 3:6, 5:15] = 1
    path = save_montage(volume, gt.copy(), tmp_path / "m.png", gt=gt, num_slices=4, scale=2)
    png = cv2.imread(str(path))
    assert png.shape == (10 * 2, 12 * 2 * 4, 3)  # 4 tiles of (J, I) slices, scaled x2
