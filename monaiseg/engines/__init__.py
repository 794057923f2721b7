"""Engines and iterations: SAM-Med2D's interactive training iteration (click simulation, mask
feedback) and the `PrepareBatch` callables that feed each kind of batch to a network."""

from .interactive import InteractiveIteration, sample_objects
from .prepare_batch import PrepareCellClipBatch, PrepareClassPromptBatch, PrepareInteractiveBatch, PrepareOptionalBoxes

__all__ = [
    "InteractiveIteration",
    "PrepareCellClipBatch",
    "PrepareClassPromptBatch",
    "PrepareInteractiveBatch",
    "PrepareOptionalBoxes",
    "sample_objects",
]
