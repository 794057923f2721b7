"""int8 post-training quantisation of an exported image encoder for OpenVINO, with NNCF.

`quantize_openvino(model, calibration)` folds the graph's constants (LiteMedSAM's gathered attention
biases, which NNCF cannot place quantizers around otherwise) and runs `nncf.quantize` in its transformer
mode (SmoothQuant, LayerNorm / softmax / GELU left in float) with `MIXED_SCOPES` kept in float: the pixel
embedding (it sees the raw image), the neck (its output is the embedding the decoder reads), the
attention's activation x activation MatMuls, and the layers NNCF's accuracy control ranked most sensitive
on small CT lesions: the first (MBConv) stage, the patch mergings, the depthwise local convolutions and the
MLPs' second layer (fc2). With them int8 passes the accuracy gate on every shared set (bundle docs).
The released weights file is never touched: the quantised model is a new OpenVINO IR
(`encoder_runtime.ExportedEncoder(precision="int8")` caches it).

`calibration_inputs(side)`: the encoder inputs NNCF calibrates on, (1, 3, side, side) float32 in [0, 1]:
`SYNTHETIC` generated images (CT-like grey slices and colour images with bright ellipses on noise, fixed
seed) and, where the project's sample data are found (`$MONAISEG_SAMPLE_DATA`, else `shared/data` beside
the repository), up to `PER_SET` images of each of its sets.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)

SAMPLE_ENV = "MONAISEG_SAMPLE_DATA"
SYNTHETIC = 8
PER_SET = 3
MIXED_SCOPES = (
    r".*patch_embed.*",
    r".*neck.*",
    r".*attn/MatMul.*",
    r".*layers\.0/.*",
    r".*downsample.*",
    r".*local_conv.*",
    r".*mlp/fc2.*",
)
BIAS_CORRECTION = True  # NNCF's fast bias correction after the ranges (part of the cache key; tests skip it)


def sample_data_dir() -> Path | None:
    """The sample-data folder (`$MONAISEG_SAMPLE_DATA`, else shared/data beside the repository), if present."""
    env = os.environ.get(SAMPLE_ENV)
    folder = Path(env) if env else Path(__file__).resolve().parents[3] / "shared" / "data"
    return folder if folder.is_dir() else None


def synthetic_images(count: int = SYNTHETIC, size: int = 512, seed: int = 0) -> list[np.ndarray]:
    """`count` uint8 (H, W, 3) images: even ones grey (CT-like), odd ones coloured; 1-4 bright ellipses on noise."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    images = []
    for n in range(count):
        channels = 1 if n % 2 == 0 else 3
        image = rng.normal(rng.uniform(40, 110), rng.uniform(8, 30), (size, size, channels))
        for _ in range(rng.integers(1, 5)):
            cy, cx = rng.uniform(0.2, 0.8, 2) * size
            ry, rx = rng.uniform(0.03, 0.2, 2) * size
            inside = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
            image[inside] += rng.uniform(40, 140, channels)
        images.append(np.repeat(np.clip(image, 0, 255).astype(np.uint8), 3 // channels, axis=-1))
    return images


def sample_images(folder: Path, per_set: int = PER_SET) -> list[np.ndarray]:
    """Up to `per_set` uint8 (H, W, 3) images of each sample set in `folder` (CT slices with a lesion,
    polyp frames, blood-cell images), in file order."""
    images: list[np.ndarray] = []
    for path in sorted((folder / "deeplesion_ct").glob("*.npz"))[:per_set]:
        with np.load(path) as npz:
            volume, labels = npz["imgs"], npz["gts"]
        z = int(np.flatnonzero(labels.reshape(len(labels), -1).any(1))[0]) if labels.any() else len(volume) // 2
        images.append(np.repeat(volume[z][..., None], 3, axis=-1))
    for pattern in ("endotect_polyp/images/*.jpg", "wbc_cellavision/*.bmp"):
        for path in sorted(folder.glob(pattern))[:per_set]:
            images.append(cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB))
    return images


def encoder_input(image: np.ndarray, side: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (1, 3, side, side) float32: min-max [0, 1], resized (bilinear, antialiased) as
    `sam_segmenter.normalize_sam_images` does for LiteMedSAM."""
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    x = (x - x.min()) / (x.max() - x.min()).clamp_min(1e-8)
    x = F.interpolate(x, size=(side, side), mode="bilinear", align_corners=False, antialias=True)
    return x.numpy()


def calibration_inputs(side: int) -> list[np.ndarray]:
    """The (1, 3, side, side) inputs NNCF calibrates on: synthetic images, then the sample images found."""
    folder = sample_data_dir()
    images = synthetic_images() + (sample_images(folder) if folder is not None else [])
    return [encoder_input(image, side) for image in images]


def quantize_openvino(model: Any, calibration: list[np.ndarray]) -> Any:
    """int8 copy of an OpenVINO model (`openvino.Model`, one input) calibrated on `calibration`
    (arrays shaped as its input); `MIXED_SCOPES` stay float; fast bias correction when `BIAS_CORRECTION`."""
    import nncf
    from openvino import passes

    manager = passes.Manager()
    manager.register_pass(passes.ConstantFolding())
    manager.run_passes(model)
    logger.info("quantising the encoder to int8 with NNCF on %d calibration inputs", len(calibration))
    return nncf.quantize(
        model,
        nncf.Dataset(calibration),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(calibration),
        ignored_scope=nncf.IgnoredScope(patterns=list(MIXED_SCOPES), validate=False),
        advanced_parameters=nncf.AdvancedQuantizationParameters(disable_bias_correction=not BIAS_CORRECTION),
    )
