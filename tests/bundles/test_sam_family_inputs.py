"""The SAM-Med2D-based bundles give every image 3 channels before batching, so a dataset that
mixes grey and RGB files trains (a batch of (1, H, W) and (3, H, W) images cannot be stacked)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import REPO
from monai.bundle import ConfigParser
from monai.transforms import Compose
from PIL import Image


@pytest.mark.parametrize("bundle", ["sam_med2d", "sam_automed", "sam_medcls"])
def test_grey_and_rgb_images_load_with_three_channels(bundle, tmp_path):
    grey = np.arange(48 * 40, dtype=np.uint8).reshape(48, 40)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.png")
    label = np.zeros((48, 40), np.uint8)
    label[10:20, 5:15] = 1
    Image.fromarray(label).save(tmp_path / "label.png")
    parser = ConfigParser()
    parser.read_config(REPO / "bundles" / bundle / "configs" / "train.json")
    parser.update({"bundle_root": str(REPO / "bundles" / bundle)})
    load = Compose(parser.get_parsed_content("load_transforms"))
    items = [
        {"image": str(tmp_path / f"{name}.png"), "label": str(tmp_path / "label.png") if bundle != "sam_medcls" else 0}
        for name in ("grey", "rgb")
    ]
    grey_out, rgb_out = (load(item)["image"] for item in items)
    assert grey_out.shape[0] == rgb_out.shape[0] == 3
    torch.testing.assert_close(torch.as_tensor(grey_out), torch.as_tensor(rgb_out))
