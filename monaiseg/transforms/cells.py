"""Transforms of the BloodCellSAM2 bundle (docs/methods.md#bloodcellsam2): CLAHE, Simard elastic deformation,
cell-density maps, multi-cell track clips and Cell Tracking Challenge (CTC) loading.

Images are channel-first (C, S0, S1) as MONAI's ``LoadImaged`` + ``EnsureChannelFirstd`` give them
(for PNG/BMP S0 is x); videos are (C, S0, S1, T) like :class:`monaiseg.transforms.LoadVideod`.
Nothing here depends on which spatial axis is x: boxes come from :func:`mask_box` on the same
arrays the networks see. A SAM-style single-cell sample from an instance map (one random cell ->
binary mask + jittered box) is :class:`monaiseg.transforms.RandBoxPromptd`.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable, RandomizableTransform, Transform
from monai.utils import convert_to_dst_type, ensure_tuple_rep
from scipy import ndimage
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2.functional import elastic

from monaiseg.prompts import mask_box
from monaiseg.utils.batch import source_name


class CLAHE(Transform):
    """Contrast-limited adaptive histogram equalisation (OpenCV) of a (C, S0, S1) image in [0, 1],
    or of each frame of a (C, S0, S1, T) video.

    RGB (C = 3): on the L channel of CIE Lab, so hues are kept; grey (C = 1): directly. The image is
    quantised to 8 bits, as CLAHE is usually run on 8-bit micrographs (OpenCV's clip limit is
    relative to the histogram size, so 16-bit input would equalise differently). ``tile_grid_size``
    is (tiles along S0, tiles along S1). Returns float32 in [0, 1] of the input's type and shape.
    """

    def __init__(self, clip_limit: float = 2.0, tile_grid_size: Sequence[int] = (8, 8)):
        self.clip_limit = float(clip_limit)
        self.tile_grid_size = tuple(int(t) for t in tile_grid_size)

    def __call__(self, img):
        array = np.asarray(torch.as_tensor(img).detach().cpu(), dtype=np.float32)
        if array.ndim not in (3, 4) or array.shape[0] not in (1, 3):
            raise ValueError(
                f"CLAHE needs a (C, S0, S1) image or (C, S0, S1, T) video with C = 1 (grey) or 3 (RGB), "
                f"got shape {array.shape}"
            )
        # OpenCV counts tiles as (columns, rows), i.e. (along S1, along S0)
        clahe = cv2.createCLAHE(clipLimit=self.clip_limit, tileGridSize=self.tile_grid_size[::-1])
        pixels = np.rint(np.clip(array, 0, 1) * 255).astype(np.uint8)
        if array.ndim == 4:
            out = np.stack([self._equalise(clahe, pixels[..., t]) for t in range(array.shape[-1])], axis=-1)
        else:
            out = self._equalise(clahe, pixels)
        return convert_to_dst_type(out.astype(np.float32) / 255.0, img, dtype=torch.float32)[0]

    @staticmethod
    def _equalise(clahe, pixels: np.ndarray) -> np.ndarray:
        """(C, S0, S1) uint8 -> equalised (C, S0, S1) uint8."""
        if pixels.shape[0] == 1:
            return clahe.apply(np.ascontiguousarray(pixels[0]))[None]
        lab = cv2.cvtColor(np.ascontiguousarray(pixels.transpose(1, 2, 0)), cv2.COLOR_RGB2LAB)
        lab[..., 0] = clahe.apply(np.ascontiguousarray(lab[..., 0]))
        return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB).transpose(2, 0, 1)


class CLAHEd(MapTransform):
    """Dictionary version of :class:`CLAHE`; errors name the image file."""

    def __init__(
        self,
        keys: KeysCollection,
        clip_limit: float = 2.0,
        tile_grid_size: Sequence[int] = (8, 8),
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.clahe = CLAHE(clip_limit, tile_grid_size)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                d[key] = self.clahe(d[key])
            except ValueError as exc:
                raise ValueError(f"{source_name(d, key)}: {exc}") from None
        return d


class RandElasticd(RandomizableTransform, MapTransform):
    """Elastic deformation of Simard et al. (ICDAR 2003): a uniform random field in [-1, 1] per
    axis, smoothed by a Gaussian of ``sigma`` px and scaled by ``alpha`` px, displaces every pixel.

    All keys get the same field (``mode`` per key: bilinear for images, nearest for labels, which
    stay label-valued); (C, S0, S1) images or (C, S0, S1, T) clips (one field for all frames).
    The warp is ``torchvision.transforms.v2.functional.elastic``. MONAI's ``Rand2DElastic`` is
    parametrised by control-grid spacing and magnitude, not by Simard's (alpha, sigma), hence this
    transform; torchvision's own ``ElasticTransform`` displaces by alpha / 2 px, here alpha is in px.
    """

    def __init__(
        self,
        keys: KeysCollection,
        alpha: float = 35.0,
        sigma: float = 4.0,
        prob: float = 0.5,
        mode: str | Sequence[str] = ("bilinear", "nearest"),
        allow_missing_keys: bool = False,
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.alpha, self.sigma = float(alpha), float(sigma)
        self.mode = ensure_tuple_rep(mode, len(self.keys))
        self.displacement: torch.Tensor | None = None  # (1, S0, S1, 2) in grid_sample units (x = S1, y = S0)

    def randomize(self, spatial_size: Sequence[int]) -> None:
        super().randomize(None)
        if not self._do_transform:
            return
        field = self.R.uniform(-1, 1, (2, *spatial_size))
        pixels = [ndimage.gaussian_filter(f, self.sigma, mode="reflect") * self.alpha for f in field]  # (S0, S1) each
        along_s1, along_s0 = pixels[1] * 2 / spatial_size[1], pixels[0] * 2 / spatial_size[0]  # px -> [-1, 1] units
        self.displacement = torch.as_tensor(np.stack([along_s1, along_s0], -1)[None], dtype=torch.float32)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        first = self.first_key(d)
        if first == []:
            return d
        spatial = tuple(d[first].shape[1:3])
        self.randomize(spatial)
        if not self._do_transform:
            return d
        assert self.displacement is not None  # drawn by randomize when the transform applies
        for key, mode in self.key_iterator(d, self.mode):
            img = d[key]
            if tuple(img.shape[1:3]) != spatial:
                raise ValueError(
                    f"{source_name(d, key)}: spatial size {tuple(img.shape[1:3])} differs from "
                    f"{spatial} of '{first}'; all keys must share one deformation"
                )
            tensor = torch.as_tensor(img).as_subclass(torch.Tensor)
            frames = tensor.movedim(-1, 1) if tensor.ndim == 4 else tensor  # (C, T, S0, S1) for clips
            out = elastic(frames.float(), self.displacement.to(frames.device), interpolation=InterpolationMode(mode))
            d[key] = convert_to_dst_type(out.movedim(1, -1) if tensor.ndim == 4 else out, img)[0]
        return d


class DensityMapd(MapTransform):
    """Cell-density map of an instance map (1, S0, S1): a Gaussian of ``sigma`` px at each cell's
    centroid, the map summing to the number of cells. ``output_size`` (S0', S1'): area-resized,
    rescaled to keep the sum. Writes (1, S0, S1) or (1, S0', S1') float32 to ``density_key``.
    """

    def __init__(
        self,
        keys: KeysCollection = "label",
        density_key: str = "density",
        sigma: float = 4.0,
        output_size: Sequence[int] | None = None,
        allow_missing_keys: bool = False,
    ):
        super().__init__(keys, allow_missing_keys)
        self.density_key, self.sigma = density_key, float(sigma)
        self.output_size = None if output_size is None else tuple(int(s) for s in output_size)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        key = self.first_key(d)
        if key == []:
            return d
        label = np.asarray(torch.as_tensor(d[key]).detach().cpu())
        if label.ndim != 3 or label.shape[0] != 1:
            raise ValueError(
                f"{source_name(d, key)}: a density map needs a (1, S0, S1) instance map, got shape {label.shape}"
            )
        instances = label[0].astype(np.int64)
        ids = np.unique(instances[instances > 0])
        impulses = np.zeros(instances.shape, np.float64)
        if ids.size:
            centres = np.rint(ndimage.center_of_mass(np.ones(instances.shape), instances, ids)).astype(int)
            np.add.at(impulses, tuple(centres.T), 1.0)
        density = ndimage.gaussian_filter(impulses, self.sigma, mode="reflect")
        if self.output_size is not None:
            density = cv2.resize(density, self.output_size[::-1], interpolation=cv2.INTER_AREA)
        if ids.size:
            density *= ids.size / density.sum()
        d[self.density_key] = torch.as_tensor(density[None], dtype=torch.float32)
        return d


def jitter_box_sides(mask: np.ndarray, jitter: float, rng: np.random.RandomState) -> np.ndarray:
    """Box (x0, y0, x1, y1) of a non-empty (S0, S1) mask (:func:`mask_box`), each side moved by up to
    ``jitter`` px, clipped to the mask. Returns float32 (4,)."""
    box = np.asarray(mask_box(mask), np.float32) + rng.uniform(-jitter, jitter, 4).astype(np.float32)
    box[[0, 2]] = np.clip(np.sort(box[[0, 2]]), 0, mask.shape[1] - 1)
    box[[1, 3]] = np.clip(np.sort(box[[1, 3]]), 0, mask.shape[0] - 1)
    return box


class RandCellTracksd(Randomizable, MapTransform):
    """Multi-cell training clip from a video (C, S0, S1, T) and its track-id label (1, S0, S1, T).

    Takes ``clip_length`` consecutive frames (a plain attribute: a curriculum may change it between
    epochs) starting on a random frame that holds a cell, and up to ``max_cells`` random track ids
    present on the clip's first frame. The label becomes (K, S0, S1, clip_length) float binary, one
    channel per cell (empty where it is absent, e.g. after it divided); ``box_key`` gets their
    frame-0 boxes (K, 4) (x0, y0, x1, y1), each side jittered by up to ``jitter`` px at
    ``reference_size`` (as :class:`RandBoxPromptd`), and ``ids_key`` the track ids (K,).
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        label_key: str = "label",
        clip_length: int = 4,
        max_cells: int = 8,
        box_key: str = "box",
        ids_key: str = "track_ids",
        jitter: float = 2.0,
        reference_size: int = 256,
    ):
        MapTransform.__init__(self, keys)
        self.label_key, self.clip_length, self.max_cells = label_key, int(clip_length), int(max_cells)
        self.box_key, self.ids_key, self.jitter, self.reference_size = box_key, ids_key, jitter, reference_size

    def randomize(self, data=None) -> None:
        pass

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        label = torch.as_tensor(d[self.label_key])
        if label.ndim != 4 or label.shape[0] != 1:
            raise ValueError(
                f"{source_name(d, self.label_key)}: track clips need a (1, S0, S1, T) track-id label, "
                f"got shape {tuple(label.shape)}"
            )
        length = label.shape[-1]
        if length < self.clip_length:
            raise ValueError(
                f"{source_name(d, self.label_key)}: {length} frames, fewer than the clip length {self.clip_length}"
            )
        occupied = (label.reshape(-1, length) > 0).any(0)
        starts = [s for s in range(length - self.clip_length + 1) if occupied[s]]
        if not starts:
            raise ValueError(
                f"{source_name(d, self.label_key)}: no cell on any frame a {self.clip_length}-frame clip can start from"
            )
        start = starts[self.R.randint(len(starts))]
        for key in {*self.key_iterator(d), self.label_key}:
            d[key] = d[key][..., start : start + self.clip_length]
        clip = torch.as_tensor(d[self.label_key])[0]  # (S0, S1, L)
        present = [int(v) for v in torch.unique(clip[..., 0]) if v > 0]
        chosen = sorted(self.R.choice(present, min(self.max_cells, len(present)), replace=False).tolist())
        masks = torch.stack([clip == v for v in chosen]).to(torch.float32)  # (K, S0, S1, L)
        jitter = self.jitter * max(clip.shape[:2]) / self.reference_size
        first = masks[..., 0].cpu().numpy()
        d[self.box_key] = torch.as_tensor(np.stack([jitter_box_sides(m, jitter, self.R) for m in first]))
        d[self.ids_key] = torch.as_tensor(chosen, dtype=torch.int64)
        d[self.label_key] = convert_to_dst_type(masks, d[self.label_key], dtype=torch.float32)[0]
        return d


class LoadCTCd(MapTransform):
    """Load a CTC sequence folder (``.../01``) and its tracking ground truth (``.../01_GT/TRA`` or ``.../01_GT``).

    The sequence becomes (C, S0, S1, T) float32 in [0, 1] with S0 = x as in :class:`LoadVideod`
    (C = 3 for RGB, 1 for grey; 8-bit / 255, 16-bit / the sequence's maximum); ``label_key`` gets the
    track ids (1, S0, S1, T) int32. Meta ``filename_or_obj`` is the folder; errors name it.
    """

    def __init__(
        self, keys: KeysCollection = ("image", "label"), label_key: str = "label", allow_missing_keys: bool = False
    ):
        super().__init__(keys, allow_missing_keys)
        self.label_key = label_key

    def _load(self, key: Hashable, folder: Path) -> torch.Tensor:
        from monaiseg.data.ctc import read_ctc_frames, read_ctc_tracks

        if not folder.is_dir():
            what = "tracking ground-truth" if key == self.label_key else "sequence"
            raise FileNotFoundError(f"{folder}: CTC {what} folder not found")
        if key == self.label_key:
            masks, _ = read_ctc_tracks(folder.parent if folder.name == "TRA" else folder)  # (T, H, W)
            return torch.from_numpy(masks).permute(2, 1, 0)[None]
        frames = read_ctc_frames(folder)  # (T, H, W[, 3]) uint8 / uint16
        scale = 255.0 if frames.dtype == np.uint8 else max(float(frames.max()), 1.0)
        frames = frames[..., None] if frames.ndim == 3 else frames
        return torch.from_numpy(frames.astype(np.float32) / scale).permute(3, 2, 1, 0)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            folder = Path(d[key])
            d[key] = MetaTensor(self._load(key, folder).contiguous(), meta={"filename_or_obj": str(folder)})
        return d
