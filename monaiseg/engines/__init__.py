"""Engines: SAM2 volume propagation, its inferer, collation and handlers."""

from .collate import collate_with_prompts
from .handlers import BestModelSaver, MetricsSummaryWriter, save_model_atomic
from .inferers import PropagationInferer
from .propagation import ObjectPrompt, propagate_volume
