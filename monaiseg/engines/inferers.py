"""MONAI inferer that segments volumes by SAM2 propagation from prompts."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.inferers import Inferer

from .propagation import ObjectPrompt, prompts_from_json, propagate_volume


class PropagationInferer(Inferer):
    """`inferer(volumes, network, prompts=...)` -> label volumes (B, 1, I, J, K).

    volumes: (B, C, I, J, K) in [0, 1]; prompts: per volume a list of `ObjectPrompt` (or its
    JSON from `collate_with_prompts`), slices along K. The output keeps the input's metadata (affine), so it is saved in its geometry.
    """

    def __init__(self, offload_to_cpu: bool = True):
        super().__init__()
        self.offload_to_cpu = offload_to_cpu

    def __call__(self, inputs: torch.Tensor, network, prompts: Sequence[Sequence[ObjectPrompt] | str]) -> torch.Tensor:
        model = network.module if hasattr(network, "module") else network  # DistributedDataParallel
        if len(prompts) != inputs.shape[0]:
            raise ValueError(f"got {len(prompts)} prompt lists for a batch of {inputs.shape[0]} volumes")
        out = torch.zeros_like(inputs[:, :1], dtype=torch.float32)  # keeps MetaTensor metadata
        for b, volume in enumerate(inputs):
            volume_prompts = prompts_from_json(prompts[b]) if isinstance(prompts[b], str) else prompts[b]
            out[b, 0] = propagate_volume(model, volume, volume_prompts, offload_to_cpu=self.offload_to_cpu).to(out.device)
        return out
