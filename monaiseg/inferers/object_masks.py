"""One mask per object from box carry, before the overlap rule composes the label map: where objects overlap
(a cavity box inside a wall box), each keeps its own pixels (`--output_objects true` in lite_medsam and medsam).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.inferers import Inferer

from monaiseg.inferers.box_carry import BoxCarryInferer
from monaiseg.inferers.box_carry_session import BoxCarry
from monaiseg.prompts import ObjectPrompt, batch_prompt_lists
from monaiseg.utils.config import as_bool


def object_masks(session: BoxCarry) -> torch.Tensor:
    """(N, H, W, D) bool: each object's own mask in a started session, objects in the order given."""
    masks = torch.zeros((len(session.prompts), session.height, session.width, session.depth), dtype=torch.bool)
    for n, obj in enumerate(session.prompts):
        for j, record in session.records[obj].items():
            if record.mask is not None:
                h, w = record.mask.shape
                masks[n, record.top : record.top + h, record.left : record.left + w, j] = record.mask
    return masks.transpose(1, 2) if session.transpose else masks


class ObjectMasksInferer(Inferer):
    """`BoxCarryInferer` whose output (B, 1 + N, H, W, D) holds the label map (channel 0, as the inferer's) and
    the N objects' own masks (0 / 1, channels 1..N; zeros past a volume's own objects); `prompt_spec` and
    `session` as the wrapped inferer's."""

    def __init__(self, inferer: BoxCarryInferer):
        super().__init__()
        self.inferer = inferer
        self.prompt_spec = inferer.prompt_spec

    def session(self, network, volume: torch.Tensor) -> BoxCarry:
        return self.inferer.session(network, volume)

    def __call__(self, inputs: torch.Tensor, network, prompts: Sequence[Sequence[ObjectPrompt] | str]) -> torch.Tensor:
        if inputs.ndim != 5:
            raise ValueError(f"box carry needs volumes (B, C, H, W, D), got shape {tuple(inputs.shape)}")
        prompt_lists = batch_prompt_lists(prompts, inputs.shape[0])
        results = []
        for b, volume in enumerate(inputs):
            session = self.session(network, volume)
            labels = session.start(prompt_lists[b])
            results.append(torch.cat([labels[None], object_masks(session).float()]))
        channels = max(r.shape[0] for r in results)
        label_channel = torch.zeros_like(inputs[:, :1], dtype=torch.float32)  # keeps MetaTensor metadata
        out = torch.cat([label_channel] * channels, dim=1)
        for b, result in enumerate(results):
            out[b, : result.shape[0]] = result.to(out.device)
        return out


def with_object_masks(inferer: BoxCarryInferer, enabled: bool | str = True) -> Inferer:
    """`ObjectMasksInferer(inferer)` when `enabled` (true / "true"), else `inferer` (a bundle switch)."""
    return ObjectMasksInferer(inferer) if as_bool(enabled, "output_objects") else inferer
