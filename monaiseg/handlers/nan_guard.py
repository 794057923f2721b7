"""Stop training with one clear error when the loss stops being a finite number.

ignite's `TerminateOnNan` ends a run quietly and the bundle then looks finished; a NaN loss is
almost always bad input (an image with NaN or constant intensity) or a learning rate that is too
high, so we raise instead, naming the iteration and the files of the batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from ignite.engine import Engine, Events
from monai.handlers import from_engine

from monaiseg.utils.batch import batch_source_names


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class StopOnNonFiniteLoss:
    """At every iteration, raise `NonFiniteLossError` if the loss is NaN or infinite.

    Args:
        output_transform: engine output -> loss (default: the `loss` entry of the trainer's output).
    """

    def __init__(self, output_transform: Callable | None = None):
        self.output_transform = output_transform or from_engine(["loss"], first=True)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        loss = self.output_transform(engine.state.output)
        while isinstance(loss, (tuple, list)) and len(loss) == 1:  # from_engine on a dict output gives (loss,)
            loss = loss[0]
        value = float(loss.detach().float().mean()) if isinstance(loss, torch.Tensor) else float(loss)
        if math.isfinite(value):
            return
        files = batch_source_names(engine.state.batch)
        where = f"inputs: {', '.join(files)}" if files else "the batch's inputs carry no file names"
        raise NonFiniteLossError(
            f"training loss is {value} at epoch {engine.state.epoch}, iteration {engine.state.iteration} "
            f"({where}); check these images and labels (NaN / constant intensities, empty labels) and the "
            "learning rate; the weights saved before this iteration are kept"
        )
