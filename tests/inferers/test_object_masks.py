"""One mask per object from box carry (`ObjectMasksInferer`, `SaveObjectMasksd`): a cavity box inside a wall
box, on a hand-made image with the box-interior stub network of test_box_carry."""

from __future__ import annotations

import json

import numpy as np
import torch
from monai.data import MetaTensor
from PIL import Image

from monaiseg.inferers import BoxCarryInferer, ObjectMasksInferer, with_object_masks
from monaiseg.prompts import ObjectPrompt
from monaiseg.transforms import SaveObjectMasksd

from .test_box_carry import BoxInterior


def test_nested_objects_keep_their_own_masks(tmp_path):
    """Wall box (2..9)^2 then cavity box (4..6)^2 on one slice, the later object wins the label map (order):
    the wall's own mask still holds the 9 cavity pixels; the masks are saved as one PNG per object with its
    label, rows as the input (the image is (C, X, Y): x = column)."""
    image = MetaTensor(torch.zeros(1, 1, 12, 10, 1), meta={"filename_or_obj": "/in/heart.png"})
    image[0, 0, 2:10, 2:9] = 1.0
    prompts = [ObjectPrompt(obj_id=1, frame=0, box=(2, 2, 8, 9)), ObjectPrompt(obj_id=2, frame=0, box=(4, 4, 6, 6))]
    inner = BoxCarryInferer(overlap="order", min_iou=0.0)
    inferer = with_object_masks(inner, "true")
    assert isinstance(inferer, ObjectMasksInferer) and with_object_masks(inner, False) is inner
    out = inferer(image, BoxInterior(), prompts=[prompts])
    assert out.shape == (1, 3, 12, 10, 1)
    labels, wall, cavity = out[0, 0, ..., 0], out[0, 1, ..., 0], out[0, 2, ..., 0]
    np.testing.assert_array_equal(
        labels, BoxCarryInferer(overlap="order", min_iou=0.0)(image, BoxInterior(), [prompts])[0, 0, ..., 0]
    )
    assert int(wall.sum()) == 8 * 7 and int(cavity.sum()) == 9  # the wall keeps the cavity's pixels
    assert int((labels == 1).sum()) == 8 * 7 - 9 and torch.all(labels[4:7, 4:7] == 2)

    item = {"pred": out[0], "object_labels": json.dumps([5, 7])}
    saved = SaveObjectMasksd("pred", tmp_path)(item)
    assert saved["pred"].shape == (1, 12, 10, 1)
    wall_png, cavity_png = (np.asarray(Image.open(tmp_path / f"heart_object{i}.png")) for i in (1, 2))
    assert wall_png.shape == (10, 12)  # rows = y, columns = x
    np.testing.assert_array_equal(wall_png, wall.numpy().T * 5)
    np.testing.assert_array_equal(cavity_png, cavity.numpy().T * 7)
