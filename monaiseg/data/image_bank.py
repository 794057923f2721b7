"""Image-bank re-sampling (IBR, from SFC; docs/methods.md#surgicalsam-and-ibr): a bank holding the latest training
sample of every foreground class, and a few uniformly drawn bank samples appended to every batch
so that tail classes are seen more often.

A sample is one training row of the class-prompt pipeline (`PrepareClassPromptBatch`): a dict
of tensors with a leading row axis, one of them `class_ids` (R,) in 1..C (the queried class).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


class ImageBank:
    """Latest row of every class; `append_to(rows)` stores the rows, then appends `samples` bank rows
    drawn uniformly (with replacement) from the filled class slots (seeded generator)."""

    def __init__(self, num_classes: int, samples: int = 4, seed: int = 0):
        if samples < 0:
            raise ValueError(f"image bank samples must be >= 0, got {samples}")
        self.num_classes, self.samples = num_classes, samples
        self.slots: dict[int, dict[str, torch.Tensor]] = {}
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.slots)

    def state_dict(self) -> dict:
        """The stored rows and the generator state (for resumable checkpoints)."""
        return {"slots": {str(k): v for k, v in self.slots.items()}, "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping) -> None:
        self.slots = {int(k): dict(v) for k, v in state["slots"].items()}
        self.generator.set_state(state["generator"])

    def update(self, rows: Mapping[str, torch.Tensor]) -> None:
        """Store (detached) the last row of each class in `rows`."""
        for i, class_id in enumerate(rows["class_ids"].tolist()):
            if not 1 <= class_id <= self.num_classes:
                raise ValueError(f"image bank: class id {class_id} outside 1..{self.num_classes}")
            self.slots[class_id] = {k: v[i].detach() for k, v in rows.items()}

    def sample(self) -> dict[str, torch.Tensor] | None:
        """`samples` rows drawn uniformly from the filled slots (None when the bank is empty)."""
        if not self.slots or not self.samples:
            return None
        classes = sorted(self.slots)
        picks = torch.randint(len(classes), (self.samples,), generator=self.generator).tolist()
        rows = [self.slots[classes[p]] for p in picks]
        return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}

    def append_to(self, rows: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """`rows` followed by bank samples, after storing `rows` in the bank."""
        self.update(rows)
        extra = self.sample()
        if extra is None:
            return dict(rows)
        return {k: torch.cat([v, extra[k].to(v.device)]) for k, v in rows.items()}
