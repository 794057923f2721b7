"""Interactive evaluation of SAM-style models as SAM-Med2D: every object of an image in every prompt
mode, "box" (tight box) and "points_N" (one positive click, then N - 1 correction clicks with the
previous mask fed back), clicks drawn with a seed from the image name."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from monai.inferers import Inferer

from monaiseg.inferers.decoding import append_clicks, decode_prompts
from monaiseg.transforms.clicks import jittered_boxes, sample_error_clicks, sample_foreground_clicks
from monaiseg.utils.batch import plain_tensor, unwrap_model

logger = logging.getLogger(__name__)


def parse_mode(mode: str) -> int:
    """'box' -> 0, 'points_N' -> N (N >= 1); ValueError otherwise."""
    if mode == "box":
        return 0
    if mode.startswith("points_") and mode[7:].isdigit() and int(mode[7:]) >= 1:
        return int(mode[7:])
    raise ValueError(f"unknown prompt mode {mode!r}: use 'box' or 'points_N' (N >= 1 clicks)")


def image_seed(seed: int, name: str) -> np.random.Generator:
    """A generator that depends only on `seed` and the image's file name (not its folder or order)."""
    return np.random.default_rng([seed, zlib.crc32(Path(name).name.encode())])


class InteractiveInferer(Inferer):
    """`inferer(images, network, labels=..., names=...)` -> binary masks (B, M * C, H, W).

    images (B, C, H, W) in [0, 1], labels (B, 1, H, W) class maps; channel m * C + c is the mask
    of class `class_values[c]` in prompt mode `modes[m]` (zeros where the class is absent). The
    image is encoded once; "points_N" modes share one click sequence (the 3-click result is the
    1-click run continued), clicks drawn from `image_seed(seed, name)`.
    """

    def __init__(
        self,
        modes: Sequence[str] = ("box", "points_1", "points_3", "points_5"),
        class_values: Sequence[int] = (1,),
        seed: int = 0,
        multimask_output: bool = True,
    ):
        super().__init__()
        self.modes = list(modes)
        self.clicks = {mode: parse_mode(mode) for mode in self.modes}
        self.class_values = [int(v) for v in class_values]
        self.seed, self.multimask_output = seed, multimask_output

    def segment(self, model, image: torch.Tensor, gt: torch.Tensor, name: str) -> dict[str, torch.Tensor]:
        """Masks (K, H, W) bool per mode for one image (1, C, H, W) and its objects gt (K, H, W)."""
        size = tuple(gt.shape[-2:])
        embeddings, _ = model.encode_images(image)
        results = {}
        if "box" in self.clicks:
            masks = decode_prompts(
                model, embeddings, size, boxes=jittered_boxes(gt), multimask_output=self.multimask_output
            )[0]
            results["box"] = masks[:, 0] > 0
        wanted = {n: mode for mode, n in self.clicks.items() if n > 0}
        if wanted:
            rng = image_seed(self.seed, name)
            points, labels = sample_foreground_clicks(gt, rng)
            low_res = None
            for n in range(1, max(wanted) + 1):
                if n > 1:
                    points, labels = append_clicks(points, labels, *sample_error_clicks(masks[:, 0] > 0, gt, rng))
                masks, low_res, _ = decode_prompts(
                    model, embeddings, size, points, labels, mask_inputs=low_res, multimask_output=self.multimask_output
                )
                if n in wanted:
                    results[wanted[n]] = masks[:, 0] > 0
        return results

    def __call__(
        self, inputs: torch.Tensor, network, labels: torch.Tensor, names: Sequence[str] | None = None
    ) -> torch.Tensor:
        model = unwrap_model(network)
        inputs, labels = plain_tensor(inputs), plain_tensor(labels)
        batch, _, height, width = inputs.shape
        num_classes = len(self.class_values)
        out = torch.zeros((batch, len(self.modes) * num_classes, height, width), device=inputs.device)
        for b in range(batch):
            present = [(c, v) for c, v in enumerate(self.class_values) if (labels[b, 0] == v).any()]
            if not present:
                continue
            gt = torch.stack([labels[b, 0] == v for _, v in present])
            results = self.segment(model, inputs[b : b + 1], gt, names[b] if names else str(b))
            for m, mode in enumerate(self.modes):
                for k, (c, _) in enumerate(present):
                    out[b, m * num_classes + c] = results[mode][k].float()
        return out


def modes_onehot(label: torch.Tensor, class_values: Sequence[int], num_modes: int) -> torch.Tensor:
    """Class map (1, H, W) -> one binary channel per class, repeated per mode: (M * C, H, W),
    the layout of `InteractiveInferer`'s output (for MONAI's Dice / IoU metrics)."""
    onehot = torch.cat([(label == int(v)) for v in class_values]).float()
    return onehot.repeat(num_modes, 1, 1)
