"""The event wiring shared by the evaluation handlers that collect per-image results and write a report."""

from __future__ import annotations

import time

from ignite.engine import Events
from monai.engines import Workflow


class OutputCollector:
    """Base of an Ignite handler that collects each iteration's outputs and writes them when the engine
    completes: `attach` calls `reset` on STARTED, `start` (the iteration's clock, `_start`) on
    ITERATION_STARTED, `collect` on ITERATION_COMPLETED and `write` on COMPLETED. Subclasses define
    `reset`, `collect` and `write`; `collect` can time the network with `time.perf_counter() - self._start`
    (data loading left out)."""

    _start: float = 0.0

    def attach(self, engine: Workflow) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_STARTED, self.start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def start(self, engine: Workflow) -> None:
        self._start = time.perf_counter()

    def reset(self, engine: Workflow) -> None:
        raise NotImplementedError

    def collect(self, engine: Workflow) -> None:
        raise NotImplementedError

    def write(self, engine: Workflow) -> None:
        raise NotImplementedError
