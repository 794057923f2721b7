"""MedSAM / LiteMedSAM input preparation that MONAI lacks: per-slice min-max scaling, LiteMedSAM's
letterbox, 2D boxes as object prompts and the LiteMedSAM challenge's ``.npz`` cases.

MedSAM (MedSAM_Inference.py, its 3D inference and training data) min-max scales every 2D image it
gives the network, over all three channels, (x - min) / max(max - min, 1e-8); a volume is scaled
slice by slice after the CT window. 2D images enter the bundle as one-slice volumes (C, X, Y, 1), so
one transform serves both.

LiteMedSAM (CVPR24_LiteMedSAM_infer.py, its training data) letterboxes instead (`Letterbox`): the
longest side is resized to 256 with area interpolation (cv2.INTER_AREA on the image in its own
dtype), the resized image is min-max scaled to [0, 1], then zero-padded at the bottom and right to
256 x 256. MONAI's `Resize(size_mode="longest", mode="area")` (adaptive average pooling) equals
cv2.INTER_AREA only for integer size ratios (a 300 x 400 uint8 image differs by up to 85 grey
levels), so cv2 is used.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform

from monaiseg.data.medsam_npz import load_challenge_npz, save_challenge_segs
from monaiseg.prompts import ObjectPrompt
from monaiseg.utils.batch import source_name

CV2_AREA_DTYPES = (np.uint8, np.uint16, np.int16, np.float32, np.float64)  # what cv2.INTER_AREA resizes


class SliceMinMaxd(MapTransform):
    """Scale each slice [..., k] of a (C, H, W, D) volume to [0, 1] by its own min and max over all
    channels and pixels, (x - min) / max(max - min, eps): MedSAM's per-image normalisation (a
    constant slice becomes 0). float32 out, MetaTensor metadata kept."""

    def __init__(self, keys: KeysCollection, eps: float = 1e-8, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        self.eps = eps

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            img = torch.as_tensor(d[key]).to(torch.float32)
            if img.ndim != 4:
                raise ValueError(
                    f"{source_name(d, key)}: per-slice scaling needs a (C, H, W, D) volume, "
                    f"got shape {tuple(img.shape)}"
                )
            low = img.amin(dim=(0, 1, 2), keepdim=True)
            high = img.amax(dim=(0, 1, 2), keepdim=True)
            d[key] = (img - low) / (high - low).clamp_min(self.eps)
        return d


class BoxPromptsd(MapTransform):
    """Boxes (K, 4) as (x0, y0, x1, y1) (from `LoadBoxesd`) -> a list of `ObjectPrompt`, objects
    1..K in file order, on slice 0 (a 2D image as a one-slice volume). Prompt lists (e.g. from
    `KeySlicePromptsd`) and missing keys pass through; no boxes at all raises, naming the image."""

    def __init__(self, keys: KeysCollection = "prompts", image_key: str = "image"):
        super().__init__(keys, allow_missing_keys=True)
        self.image_key = image_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            if isinstance(d[key], list):
                continue
            boxes = torch.as_tensor(d[key], dtype=torch.float32).reshape(-1, 4)
            if len(boxes) == 0:
                raise ValueError(f"{source_name(d, self.image_key)}: the box file lists no boxes")
            d[key] = [
                ObjectPrompt(obj_id=i + 1, frame=0, box=(float(x0), float(y0), float(x1), float(y1)))
                for i, (x0, y0, x1, y1) in enumerate(boxes)
            ]
        return d


class Letterbox:
    """LiteMedSAM's map between an (H, W) slice and the S x S network input (S = `size`, 256).

    The slice is resized to (new_h, new_w) = (int(H r + 0.5), int(W r + 0.5)), r = S / max(H, W),
    and padded at the bottom / right. `image` prepares the input, `box` scales a user box as
    upstream's `resize_box_to_256` (int(v r), truncated), `mask_box` is upstream's `get_bbox256` of
    a mask carried to the next slice, `restore` takes S x S logits back to (H, W).
    """

    def __init__(self, height: int, width: int, size: int = 256, box_shift: int = 3):
        self.height, self.width, self.size, self.box_shift = int(height), int(width), int(size), int(box_shift)
        self.ratio = self.size / max(self.height, self.width)
        scale = self.size * 1.0 / max(self.height, self.width)
        self.new_h, self.new_w = int(self.height * scale + 0.5), int(self.width * scale + 0.5)

    def image(self, image: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(C, H, W) in any intensity range -> (C, S, S) float32: area resize in the image's dtype
        (integer types cv2 cannot resize become float32), min-max over the resized image, zero pad."""
        array = np.asarray(torch.as_tensor(image).detach().cpu()).transpose(1, 2, 0)
        if array.dtype not in CV2_AREA_DTYPES:
            array = array.astype(np.float32)
        resized = cv2.resize(array, (self.new_w, self.new_h), interpolation=cv2.INTER_AREA)
        resized = resized.reshape(self.new_h, self.new_w, -1)
        if np.issubdtype(resized.dtype, np.integer):
            resized = resized.astype(np.float64)  # uint8 upstream: exact differences, divided in float64
        scaled = (resized - resized.min()) / np.clip(resized.max() - resized.min(), a_min=1e-8, a_max=None)
        padded = np.pad(scaled, ((0, self.size - self.new_h), (0, self.size - self.new_w), (0, 0)))
        return torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1))).float()

    def box(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) in slice pixels -> the S x S input's, each int(v r) as upstream."""
        x0, y0, x1, y1 = (float(int(v * self.ratio)) for v in box)
        return x0, y0, x1, y1

    def mask_box(self, mask: np.ndarray, value: int = 1) -> tuple[float, float, float, float] | None:
        """Box in the S x S input of an (H, W) mask, as upstream carries a mask to the next slice: the
        mask (holding `value`, the object's label, as uint8) area-resized, its tight box grown by
        `box_shift` pixels and clipped to [0, S]; None when nothing survives the resize."""
        values = np.asarray(mask, dtype=np.uint8) * np.uint8(min(max(int(value), 1), 255))
        resized = cv2.resize(values, (self.new_w, self.new_h), interpolation=cv2.INTER_AREA)
        rows, cols = np.nonzero(resized)
        if rows.size == 0:
            return None
        shift, size = self.box_shift, self.size
        return (
            float(max(0, cols.min() - shift)),
            float(max(0, rows.min() - shift)),
            float(min(size, cols.max() + shift)),
            float(min(size, rows.max() + shift)),
        )

    def restore(self, logits: torch.Tensor) -> torch.Tensor:
        """(K, M, S, S) logits -> (K, M, H, W): the padding cropped off, bilinear resize (upstream's
        `postprocess_masks`)."""
        cropped = logits[..., : self.new_h, : self.new_w]
        return F.interpolate(cropped, size=(self.height, self.width), mode="bilinear", align_corners=False)


class Letterboxd(MapTransform):
    """LiteMedSAM's training input: 2D images (C, H, W) under `keys` letterboxed to (C, S, S)
    (`Letterbox.image`), labels under `label_keys` resized with cv2.INTER_NEAREST to the same
    (new_h, new_w) and zero-padded, as upstream's training data; boxes (4,) (x0, y0, x1, y1) under
    `box_keys` scaled by r = S / max(H, W) (not truncated). Metadata is kept (not updated)."""

    def __init__(
        self,
        keys: KeysCollection = "image",
        label_keys: str | Sequence[str] = "label",
        box_keys: str | Sequence[str] = (),
        size: int = 256,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.label_keys = [label_keys] if isinstance(label_keys, str) else list(label_keys)
        self.box_keys = [box_keys] if isinstance(box_keys, str) else list(box_keys)
        self.size = size

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        frame = None
        for key in [*self.key_iterator(d), *(k for k in self.label_keys if k in d)]:
            value = d[key]
            if value.ndim != 3:
                raise ValueError(
                    f"{source_name(d, key)}: the letterbox takes a 2D (C, H, W) slice, got shape {tuple(value.shape)}"
                )
            frame = Letterbox(value.shape[1], value.shape[2], self.size)
            out = frame.image(value) if key in self.keys else self._label(value, frame)
            d[key] = MetaTensor(out, meta=dict(value.meta)) if isinstance(value, MetaTensor) else out
        for key in self.box_keys:
            if key in d and frame is not None:
                d[key] = torch.as_tensor(d[key], dtype=torch.float32) * frame.ratio
        return d

    def _label(self, label: torch.Tensor, frame: Letterbox) -> torch.Tensor:
        array = np.asarray(torch.as_tensor(label).detach().cpu(), dtype=np.float32).transpose(1, 2, 0)
        resized = cv2.resize(array, (frame.new_w, frame.new_h), interpolation=cv2.INTER_NEAREST)
        resized = resized.reshape(frame.new_h, frame.new_w, -1)
        padded = np.pad(resized, ((0, self.size - frame.new_h), (0, self.size - frame.new_w), (0, 0)))
        return torch.from_numpy(np.ascontiguousarray(padded.transpose(2, 0, 1))).to(torch.as_tensor(label).dtype)


class LoadChallengeNpzd(MapTransform):
    """Read a LiteMedSAM challenge case (`monaiseg.data.medsam_npz`): the path under `keys` becomes the
    image as a volume (C, H, W, D) in the file's dtype (2D cases: D = 1), rows along H as upstream
    sees them; `prompts_key` gets one `ObjectPrompt` per box (object i = box i, 1-based; 3D boxes
    with their slice range). Metadata: `filename_or_obj` and `challenge_3d`."""

    def __init__(self, keys: KeysCollection = "image", prompts_key: str = "prompts"):
        super().__init__(keys)
        self.prompts_key = prompts_key

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            case = load_challenge_npz(d[key])
            meta = {"filename_or_obj": str(d[key]), "challenge_3d": case["is_3d"]}
            d[key] = MetaTensor(torch.from_numpy(case["image"]), meta=meta)
            d[self.prompts_key] = case["prompts"]
        return d


class SaveChallengeNpzd(MapTransform):
    """Write the label volume under `keys` (1, H, W, D) of a challenge case as `output_dir/<case name>`
    holding `segs` uint8 (2D: (H, W); 3D: (D, H, W)), atomically."""

    def __init__(self, keys: KeysCollection = "pred", output_dir: str | Path = "./eval", print_log: bool = True):
        super().__init__(keys)
        self.output_dir, self.print_log = Path(output_dir), print_log

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            pred = d[key]
            meta = getattr(pred, "meta", {})
            labels = torch.as_tensor(pred).detach().cpu()[0]
            segs = labels.permute(2, 0, 1) if bool(meta.get("challenge_3d", False)) else labels[..., 0]
            path = save_challenge_segs(segs.numpy(), self.output_dir / Path(str(meta["filename_or_obj"])).name)
            if self.print_log:
                print(f"file written: {path}.")
        return d
