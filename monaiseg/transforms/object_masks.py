"""One mask file per object (`--output_objects true`): `<name>_object<i>.png` for each prompted object i, so
objects that overlap keep their own pixels (the label map gives each pixel one object)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from PIL import Image

from monaiseg.data.batch_inputs import input_name
from monaiseg.utils.files import atomic_outputs


class SaveObjectMasksd(MapTransform):
    """2D output (1 + N, X, Y), or a one-slice volume (1 + N, X, Y, 1), under `keys`
    (`monaiseg.inferers.ObjectMasksInferer`; the image loaded x first, as MONAI loads PNG): channels 1..N are
    written as `<output_dir>/<input name>_object<i>.png` (rows as the input, uint8: the object's label from
    the JSON list under `labels_key`, else i, 0 elsewhere) and dropped, leaving the label map (1, X, Y[, 1]).
    A single-channel output passes through."""

    def __init__(self, keys: KeysCollection, output_dir: str | Path, labels_key: str = "object_labels"):
        super().__init__(keys)
        self.output_dir, self.labels_key = Path(output_dir), labels_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            if pred.shape[0] == 1:
                continue
            masks = np.asarray(torch.as_tensor(pred[1:]).cpu()) > 0
            if masks.ndim == 4 and masks.shape[-1] == 1:
                masks = masks[..., 0]
            if masks.ndim != 3:
                raise ValueError(f"object masks need a 2D output (1 + N, X, Y), got shape {tuple(pred.shape)}")
            labels = json.loads(d[self.labels_key]) if self.labels_key in d else list(range(1, len(masks) + 1))
            name = input_name(pred.meta["filename_or_obj"])[0]
            paths = [self.output_dir / f"{name}_object{i + 1}.png" for i in range(len(labels))]
            with atomic_outputs(*paths) as tmps:
                for tmp, mask, label in zip(tmps, masks, labels):
                    Image.fromarray((mask.T * int(label)).astype(np.uint8)).save(tmp, format="PNG")
            d[key] = pred[:1]
        return d
