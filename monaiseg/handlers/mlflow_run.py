"""What a bundle adds to the MLflow run that `monai.bundle run --tracking mlflow` records.

MONAI's tracking settings append an `MLFlowHandler` to `train#handlers` that logs the loss, the
metrics, `max_epochs` / `epoch_length` and the executed config; they have no entry for a bundle's
own parameters (e.g. the trainable-parameter count) or for the weights it writes. A bundle names
those once, as `mlflow_params` and `mlflow_artifacts` in train.json, and passes them here in
`initialize`; without `--tracking` there is no `MLFlowHandler` and nothing happens.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from monai.handlers import MLFlowHandler


def add_to_mlflow_run(
    handlers: Iterable[Any], params: Mapping[str, Any] | None = None, artifacts: Iterable[str] = ()
) -> None:
    """Every `MLFlowHandler` among `handlers` also logs `params` when its run starts and the files
    `artifacts` when the run completes (after those it already logs)."""
    for handler in handlers:
        if isinstance(handler, MLFlowHandler):
            handler.experiment_param = {**(handler.experiment_param or {}), **(params or {})}
            handler.artifacts = (*handler.artifacts, *artifacts)


def log_to_mlflow_run(handlers: Iterable[Any], paths: Iterable[str | Path], artifact_path: str | None = None) -> bool:
    """Log the files `paths` as artifacts (under `artifact_path`) of the run of the first `MLFlowHandler`
    among `handlers` that has one; False when there is none (no `--tracking`, or a rank other than 0)."""
    for handler in handlers:
        if isinstance(handler, MLFlowHandler) and handler.cur_run is not None:
            for path in paths:
                handler.client.log_artifact(handler.cur_run.info.run_id, str(path), artifact_path)
            return True
    return False
