"""2D prompt and check transforms of the cell bundles: instance boxes, user boxes, image checks, overlays."""

from __future__ import annotations

import json

import pytest
import torch
from monai.data import MetaTensor

from monaiseg.transforms import CheckImaged, InstanceBoxesd, LoadBoxesd, SaveOverlayd


def test_instance_boxes_and_user_boxes_transforms(tmp_path):
    label = torch.zeros(1, 10, 12, dtype=torch.int32)
    label[0, 2:4, 5:9] = 3
    label[0, 6:9, 1:2] = 7
    boxes = InstanceBoxesd()({"label": label})["boxes"]
    assert boxes.tolist() == [[5, 2, 8, 3], [1, 6, 1, 8]]
    assert InstanceBoxesd()({"label": torch.zeros(1, 4, 4)})["boxes"].shape == (0, 4)

    path = tmp_path / "boxes.json"
    path.write_text(json.dumps([[1, 2, 5, 8]]))  # viewer (x, y); the array is (C, X, Y) as MONAI loads PNG
    image = MetaTensor(torch.zeros(3, 10, 12))
    assert LoadBoxesd()({"image": image, "boxes": str(path)})["boxes"].tolist() == [[2, 1, 8, 5]]
    path.write_text(json.dumps([[1, 2, 10, 8]]))  # x1 = 10 is outside a 10-pixel-wide image
    with pytest.raises(ValueError, match=f"{path}.*outside"):
        LoadBoxesd()({"image": image, "boxes": str(path)})
    assert "boxes" not in LoadBoxesd()({"image": image})


def test_check_image_channels_and_bit_depth():
    check = CheckImaged("image", spatial_dims=2, channels=[3], dtypes=["uint8"])
    good = torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8)
    assert check({"image": good})["image"] is good
    with pytest.raises(ValueError, match="4 channels, expected 3"):
        check({"image": torch.randint(0, 255, (4, 8, 8), dtype=torch.uint8)})
    with pytest.raises(ValueError, match="int32 .bit depth."):
        check({"image": torch.randint(0, 60000, (3, 8, 8), dtype=torch.int32)})


def test_save_overlay_writes_png_in_file_orientation(tmp_path):
    import cv2

    image = MetaTensor(torch.zeros(3, 20, 10), meta={"filename_or_obj": "/data/cell_7.png"})  # (C, X, Y)
    pred = torch.zeros(1, 20, 10)
    pred[0, 15:, :] = 1  # right part of the image (large x)
    SaveOverlayd(output_dir=str(tmp_path))({"image": image, "pred": pred})
    png = cv2.imread(str(tmp_path / "cell_7_overlay.png"))
    assert png.shape == (10, 20, 3)  # rows = y, columns = x
    assert png[:, 15:].any() and not png[:, :15].any()
    SaveOverlayd(output_dir=str(tmp_path / "off"), enabled=False)({"image": image, "pred": pred})
    SaveOverlayd(output_dir=str(tmp_path / "off"), enabled="false")(
        {"image": image, "pred": pred}
    )  # --save_overlays false
    assert not (tmp_path / "off").exists()
    with pytest.raises(ValueError, match="save_overlays"):
        SaveOverlayd(enabled="maybe")
