"""The trainer's output dict as a one-item list, the form MONAI's logging handlers read."""

from __future__ import annotations

from collections.abc import Mapping


class OutputAsList:
    """Trainer handler (list it first): after each iteration the trainer's output dict (rows, not
    frames, so it is not decollated) becomes `[output]`, the form that MONAI's
    `from_engine(["loss"], first=True)` of StatsHandler and the MLflow tracking reads."""

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine) -> None:
        if isinstance(engine.state.output, Mapping):
            engine.state.output = [engine.state.output]
