"""Synthetic 2D segmentation and classification sets for the SAM / SAM-Med2D bundles."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from monaiseg.data import (
    ORGAN_CLASSES,
    SHAPE_CLASSES,
    make_shape_image,
    make_synthetic_2d,
    make_synthetic_2d_dataset,
)


@pytest.mark.parametrize("rgb", [False, True])
def test_case_has_each_class_as_one_blob(rgb):
    image, label = make_synthetic_2d((96, 80), seed=5, rgb=rgb)
    assert image.dtype == np.uint8 and image.shape == ((96, 80, 3) if rgb else (96, 80))
    assert label.shape == (96, 80) and set(np.unique(label)) == {0, *ORGAN_CLASSES}
    grey = image.mean(-1) if rgb else image
    for value in ORGAN_CLASSES:
        assert ndimage.label(label == value)[1] == 1
    # each structure is brighter or darker than the body as documented: lesion > organ > vessel
    means = [grey[label == v].mean() for v in (2, 1, 3)]
    assert means == sorted(means, reverse=True)
    assert np.array_equal(make_synthetic_2d((96, 80), seed=5, rgb=rgb)[1], label)


def test_fewer_classes():
    _, label = make_synthetic_2d((64, 64), seed=1, num_classes=1)
    assert set(np.unique(label)) == {0, 1}
    with pytest.raises(ValueError, match="num_classes"):
        make_synthetic_2d(num_classes=4)


def test_segmentation_dataset(synthetic_2d):
    content = json.loads((synthetic_2d / "datalist.json").read_text())
    assert [len(content[s]) for s in ("training", "validation", "testing")] == [7, 2, 1]
    assert content["labels"] == {str(k): v for k, v in ORGAN_CLASSES.items()}
    item = content["training"][0]
    image = np.asarray(Image.open(synthetic_2d / item["image"]))
    label = np.asarray(Image.open(synthetic_2d / item["label"]))
    assert image.shape == label.shape == (64, 64) and label.max() == 3


def test_shape_images_differ_by_class():
    images = {name: make_shape_image(name, (64, 64), seed=0, rgb=False) > 120 for name in SHAPE_CLASSES}
    disc, ring, square = images["disc"].sum(), images["ring"].sum(), images["square"].sum()
    assert ring < square < disc  # same centre and r: 0.64 pi r^2 < (1.7 r)^2 < pi r^2
    with pytest.raises(ValueError, match="unknown shape class"):
        make_shape_image("star")


def test_classification_dataset(synthetic_classification):
    content = json.loads((synthetic_classification / "datalist.json").read_text())
    for split, per_class in (("training", 2), ("validation", 1), ("testing", 1)):
        assert sorted(item["label"] for item in content[split]) == sorted(list(range(3)) * per_class)
    with open(synthetic_classification / "labels.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and {r["label"] for r in rows} == set(SHAPE_CLASSES)
    assert all((synthetic_classification / r["image"]).parent.name == r["label"] for r in rows)
    assert np.asarray(Image.open(synthetic_classification / rows[0]["image"])).shape == (48, 48, 3)


def test_refuses_non_empty_output(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        make_synthetic_2d_dataset(tmp_path, num_images=2)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]
