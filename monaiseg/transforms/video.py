"""Videos (MP4 or a frame folder) as (3, W, H, T) volumes for propagation, and mask frames out.

A video becomes a volume whose first two axes are x and y and whose slices are frames, so the
prompt file format of volumes applies unchanged: a box [i0, j0, i1, j1] is [x0, y0, x1, y1].
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from monaiseg.data.video import read_video, write_mask_frames


class LoadVideod(MapTransform):
    """Replace a video path by a MetaTensor (3, W, H, T) in [0, 1]; meta keeps the frame names."""

    def __init__(self, keys: KeysCollection = "image"):
        super().__init__(keys)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            frames, fps, names = read_video(d[key])  # (T, H, W, 3) uint8
            volume = torch.from_numpy(frames).permute(3, 2, 1, 0).float() / 255.0
            meta: dict[str, object] = {"filename_or_obj": str(d[key]), "frame_names": names}
            if fps is not None:  # frame folders have none (and None does not collate)
                meta["fps"] = fps
            d[key] = MetaTensor(volume, meta=meta)
        return d


class SaveMaskFramesd(MapTransform):
    """Write a (1, W, H, T) label prediction as `<output_dir>/<video name>/<frame name>.png`."""

    def __init__(self, keys: KeysCollection = "pred", output_dir: str = "./eval", source_key: str = "image"):
        super().__init__(keys)
        self.output_dir, self.source_key = Path(output_dir), source_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        meta = d[self.source_key].meta
        for key in self.key_iterator(d):
            masks = np.asarray(torch.as_tensor(d[key]).detach().cpu())[0].transpose(2, 1, 0)  # (T, H, W)
            name = Path(str(meta["filename_or_obj"])).stem
            write_mask_frames(masks.astype(np.uint8), self.output_dir / name, list(meta["frame_names"]))
        return d


class SaveTracksd(MapTransform):
    """Write tracked cell ids (1, W, H, T) in the Cell Tracking Challenge result layout:
    `<output_dir>/<video name>_RES/maskNNN.tif` + `res_track.txt` (replacing an earlier result)."""

    def __init__(self, keys: KeysCollection = "pred", output_dir: str = "./eval", source_key: str = "image"):
        super().__init__(keys)
        self.output_dir, self.source_key = Path(output_dir), source_key

    def __call__(self, data: Mapping) -> dict:
        from monaiseg.data.ctc import write_ctc_result

        d = dict(data)
        name = Path(str(d[self.source_key].meta["filename_or_obj"])).stem
        for key in self.key_iterator(d):
            tracks = np.asarray(torch.as_tensor(d[key]).detach().cpu())[0].transpose(2, 1, 0).astype(np.int32)
            target = self.output_dir / f"{name}_RES"
            staging = self.output_dir / f".{name}_RES.new"
            shutil.rmtree(staging, ignore_errors=True)
            write_ctc_result(staging, tracks)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        return d
