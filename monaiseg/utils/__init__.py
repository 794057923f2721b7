"""Helpers every layer may use: atomic files, config values, batch metadata, distributed exchange,
mixed precision and compilation switches.
The lowest layer of the package: it imports nothing else of monaiseg."""

from .batch import batch_source_names, image_names, plain_tensor, source_name, unwrap_model
from .bundle_run import bundle_command, run_bundle
from .config import as_bool, none_if_null, silenced
from .distributed import (
    broadcast_parameters,
    concatenated_to_dataset_order,
    gather_in_dataset_order,
    is_rank0,
    rank,
    sum_over_ranks,
    sync_gradients,
    world_size,
)
from .files import atomic_folders, atomic_outputs, write_csv_atomic, write_json_atomic
from .precision import amp_dtype, autocast, needs_grad_scaler, prepare_network

__all__ = [
    "amp_dtype",
    "as_bool",
    "atomic_folders",
    "atomic_outputs",
    "autocast",
    "batch_source_names",
    "broadcast_parameters",
    "bundle_command",
    "concatenated_to_dataset_order",
    "gather_in_dataset_order",
    "image_names",
    "is_rank0",
    "needs_grad_scaler",
    "none_if_null",
    "plain_tensor",
    "prepare_network",
    "rank",
    "run_bundle",
    "silenced",
    "source_name",
    "sum_over_ranks",
    "sync_gradients",
    "unwrap_model",
    "world_size",
    "write_csv_atomic",
    "write_json_atomic",
]
