"""SAM2 tracking over a volume held in memory, the parts `propagate_volume` and `VolumeSession` share:
frames made on access, prompts given to a tracking state, and the frames whose image features both
passes (forward and backward) read, encoded once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import overload

import numpy as np
import torch

from monaiseg.prompts import ObjectPrompt


class LazyFrames(Sequence[torch.Tensor]):
    """Frames of a (C, H, W, D) volume in [0, 1], made into SAM2 input (3, S, S) on access."""

    def __init__(self, volume: torch.Tensor, model):
        self.volume, self.model = volume, model

    def __len__(self) -> int:
        return self.volume.shape[-1]

    @overload
    def __getitem__(self, index: int) -> torch.Tensor: ...

    @overload
    def __getitem__(self, index: slice) -> list[torch.Tensor]: ...

    def __getitem__(self, index: int | slice) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        frame = self.volume[..., index].unsqueeze(0).to(self.model.device, torch.float32)
        return self.model.normalize_images(frame)[0]


def add_prompt(model, state: dict, prompt: ObjectPrompt) -> None:
    """Give sam2's tracking `state` one prompt (a mask, or points and / or a box on its frame)."""
    if prompt.mask is not None:
        model.add_new_mask(state, prompt.frame, prompt.obj_id, torch.as_tensor(np.asarray(prompt.mask, dtype=bool)))
        return
    points = labels = None
    if prompt.points is not None:
        points = np.asarray(prompt.points, dtype=np.float32)
        labels = np.asarray(prompt.point_labels, dtype=np.int32)
    box = None if prompt.box is None else np.asarray(prompt.box, dtype=np.float32)
    model.add_new_points_or_box(
        state, prompt.frame, prompt.obj_id, points=points, labels=labels, box=box, normalize_coords=True
    )


SHARED_FRAMES = 32  # frames whose image features are kept for the backward pass (~8 MiB each at 512)


def frames_in_both_passes(prompts: Sequence[ObjectPrompt]) -> set[int]:
    """Frames whose image features are encoded once for both passes: the frames from the first to the last
    prompted frame (both passes visit them), or the prompted frames alone when that span exceeds SHARED_FRAMES."""
    first, last = min(p.frame for p in prompts), max(p.frame for p in prompts)
    if last - first < SHARED_FRAMES:
        return set(range(first, last + 1))
    return {p.frame for p in prompts}
