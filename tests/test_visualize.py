"""Overlay montages."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

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


def test_case_picture_titles_a_key_slice_and_refuses_what_it_cannot_draw():
    from monaiseg.visualize import case_picture, key_index, slice_counts

    gt = np.zeros((12, 10, 5), int)
    gt[2:8, 2:8, 3] = 1
    gt[4:5, 4:5, 1] = 1
    assert slice_counts(gt).tolist() == [0, 1, 0, 36, 0]
    assert key_index(None, slice_counts(np.zeros_like(gt))) == 2  # nothing anywhere: the middle slice
    assert key_index(slice_counts(gt), slice_counts(np.zeros_like(gt))) == 3  # the most ground truth
    picture = case_picture(np.random.default_rng(0).random((1, 12, 10, 5)), gt, gt, title="case", size=24)
    assert picture.shape == (22 + 20, 24 + 2, 3)  # title bar over the (J, I) slice scaled to 24 on its long side
    for image, pred, match in [
        (np.zeros((1, 12)), np.zeros(12, int), "expected"),
        (np.zeros((1, 12, 10)), np.zeros((10, 12), int), "does not match"),
        (np.zeros((3, 12, 10)), np.zeros((12, 9), int), "does not match"),
        (np.full((1, 12, 10), np.nan), np.zeros((12, 10), int), "NaN"),
    ]:
        with pytest.raises(ValueError, match=match):
            case_picture(image, pred)


def test_key_index_takes_the_slice_with_the_most_foreground_from_hand_made_counts():
    from monaiseg.visualize import key_index

    assert key_index(np.array([0, 3, 10, 2])) == 2  # the most, not the first slice with any
    assert key_index(np.array([5, 1, 5])) == 0  # ties: the lowest index
    assert key_index(np.zeros(4), np.array([0, 0, 1, 7])) == 3  # ground truth empty: the prediction's
    assert key_index(None, np.zeros(7)) == 3  # nothing anywhere: the middle


@pytest.mark.parametrize(
    "shape, channels",
    [((12, 10), 1), ((1, 12, 10), 1), ((12, 10, 1), 1), ((1, 12, 10, 1), 1), ((3, 12, 10), 3), ((12, 10, 3), 3)],
    ids=["grey-no-channel", "grey-first", "grey-last", "grey-first-and-trailing-1", "rgb-first", "rgb-last"],
)
def test_2d_images_of_every_layout_are_drawn(shape, channels):
    from monaiseg.visualize import case_picture, channel_first

    rng = np.random.default_rng(0)
    image = rng.random(shape)
    assert channel_first(image, (12, 10)).shape == (channels, 12, 10)
    pred = np.zeros((12, 10), int)
    pred[2:6, 3:7] = 1
    picture = case_picture(image, pred, pred, title="2d", size=24)
    assert picture.shape == (22 + 20, 24 + 2, 3)  # title bar over the (J, I) picture scaled to 24
    if channels == 3:  # an RGB image keeps its colours: the top-left pixel (no label there) is its own colour
        rgb = channel_first(image, (12, 10))[:, 0, 0]
        low, high = image.min(), image.max()
        expected = ((rgb - low) / (high - low) * 255).astype(np.uint8)
        assert np.abs(picture[22, 0].astype(int) - expected).max() <= 1


def test_the_per_case_plot_fits_the_report_column():
    from monaiseg.visualize import metric_plot_png

    organs = {f"organ {i}": [0.5, 0.9] for i in range(13)}
    png = cv2.imdecode(np.frombuffer(metric_plot_png({"dice": organs, "nsd": organs}), np.uint8), cv2.IMREAD_COLOR)
    assert png.shape[1] <= 1200 and png.shape[0] > 2 * 300  # 13 labels: the two panels stacked, not side by side
