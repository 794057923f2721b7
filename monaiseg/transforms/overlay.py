"""PNG overlays of 2D predictions on their images, as a post-processing transform."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monaiseg.utils.batch import source_name
from monaiseg.utils.config import as_bool
from monaiseg.utils.files import atomic_outputs
from monaiseg.visualize import overlay


class SaveOverlayd(MapTransform):
    """Write `<output_dir>/<image name>_overlay.png`: the label map under `keys` (1, S0, S1) over
    the image (C, S0, S1) in [0, 1] (arrays as MONAI loads PNG/BMP: x first, so they are
    transposed back for the file). Disabled when `enabled` is false (a bool or a command-line string such
    as "false"; overlays on request)."""

    def __init__(
        self,
        keys: KeysCollection = "pred",
        image_key: str = "image",
        output_dir: str = "./eval",
        postfix: str = "overlay",
        enabled: bool | str = True,
    ):
        super().__init__(keys)
        self.image_key, self.output_dir, self.postfix = image_key, Path(output_dir), postfix
        self.enabled = as_bool(enabled, "save_overlays")

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        if not self.enabled:
            return d
        image = np.asarray(torch.as_tensor(d[self.image_key]).detach().cpu().float())
        image = image[0].T if image.shape[0] == 1 else image.transpose(2, 1, 0)  # (H, W) or (H, W, 3)
        image = (image - image.min()) / max(float(image.max() - image.min()), 1e-8)
        for key in self.key_iterator(d):
            labels = np.asarray(torch.as_tensor(d[key]).detach().cpu())[0].T.round().astype(np.int32)
            name = Path(source_name(d, self.image_key)).name.split(".")[0]
            target = self.output_dir / f"{name}_{self.postfix}.png"
            with atomic_outputs(target) as (tmp,):
                if not cv2.imwrite(str(tmp), cv2.cvtColor(overlay(image, labels), cv2.COLOR_RGB2BGR)):
                    raise OSError(f"could not write {target}")
        return d
