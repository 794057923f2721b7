"""Interactive sessions over a volume: what a server keeps between requests to correct a result.

`InteractiveSession` is the type both session kinds implement (`VolumeSession`: SAM2 propagation;
`BoxCarry`: MedSAM / LiteMedSAM box carry), and `SessionError` is the error of an interaction they cannot
apply. An inferer that keeps sessions has `session(network, volume (C, H, W, D)) -> InteractiveSession`.
`owns_frame` is the rule both sessions (and `propagate_volume`) use to split a volume between the
prompted slices of an object.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from monaiseg.prompts import ObjectPrompt


class SessionError(ValueError):
    """An interaction the session cannot apply, with the HTTP-like `status` a server answers it
    with: 404 unknown object, 400 prompt outside the volume, 409 nothing to undo."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class InteractiveSession(Protocol):
    """One volume's segmentation kept for corrections. `labels` (H, W, D): the current label volume
    (each object its `obj_id`); `history[obj_id]`: the object's corrections, last one last. `correct`,
    `undo` and `reset` return the slices whose labels changed, or raise `SessionError`."""

    labels: torch.Tensor
    history: dict[int, list[Any]]

    @property
    def objects(self) -> list[int]:
        """The object ids the session holds, sorted."""
        ...

    def start(self, prompts: Sequence[ObjectPrompt]) -> torch.Tensor:
        """Segment the volume from `prompts`; returns `labels`."""
        ...

    def correct(self, prompt: ObjectPrompt, carry: bool = True) -> list[int]:
        """Add one object's prompt on one slice and recompute what it changes (`carry=False`: that slice
        only, the rest at the next `propagate`)."""
        ...

    def propagate(self) -> list[int]:
        """Carry / re-track from every slice corrected with `carry=False`, at once."""
        ...

    def add(self, prompts: Sequence[ObjectPrompt]) -> list[int]:
        """New objects (not in the session) segmented from their prompts; the other objects kept."""
        ...

    def undo(self, obj_id: int) -> list[int]:
        """Revert the object's last correction."""
        ...

    def reset(self, obj_id: int) -> list[int]:
        """Drop the object."""
        ...

    def nbytes(self) -> int:
        """Bytes the session holds (to bound a store of sessions)."""
        ...


def owns_frame(keys: Sequence[int], frame: int, reverse: bool) -> bool:
    """Whether the pass in this direction gives the object's mask on `frame`: its nearest
    prompted frame behind `frame` is closer than the one ahead (ties go to the forward pass)."""
    forward = min((frame - k for k in keys if k <= frame), default=float("inf"))
    backward = min((k - frame for k in keys if k >= frame), default=float("inf"))
    return backward < forward if reverse else forward <= backward
