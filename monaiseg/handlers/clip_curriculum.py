"""Video-stage training on clips of tracked cells: batch preparation and a clip-length curriculum."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ignite.engine import Engine, Events

logger = logging.getLogger(__name__)


class ClipCurriculum:
    """Clip-length curriculum: at the start of each epoch set `sampler.clip_length` from
    `schedule` {first epoch: length} (BloodCellSAM2 stage 2: 3-5 frames up to tens).

    The sampler is the dataset's clip transform (e.g. `RandCellTracksd`); the change reaches
    DataLoader workers because they are re-created for every epoch (persistent_workers=False).
    """

    def __init__(self, sampler, schedule: Mapping[int | str, int]):
        if not schedule:
            raise ValueError("clip curriculum needs at least one {epoch: clip_length} entry")
        self.sampler = sampler
        self.schedule = sorted((int(epoch), int(length)) for epoch, length in schedule.items())
        if self.schedule[0][0] > 1:
            raise ValueError(f"clip curriculum must start at epoch 1, got {dict(self.schedule)}")

    def length_at(self, epoch: int) -> int:
        """Clip length used in (1-based) `epoch`."""
        return [length for start, length in self.schedule if start <= epoch][-1]

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        length = self.length_at(engine.state.epoch)
        if length != self.sampler.clip_length:
            logger.info("epoch %d: clip length %d -> %d", engine.state.epoch, self.sampler.clip_length, length)
        self.sampler.clip_length = length
