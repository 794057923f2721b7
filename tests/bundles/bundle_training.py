"""In-process tiny trainings of any bundle (train.json + tiny.json), shared by tests/bundles/conftest.py and
test_bundles_conformance.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import torch

from monaiseg.utils.bundle_contract import NO_VALIDATION_DURING_TRAINING

EPOCHS = 2  # resume runs: epochs of full passes over the tiny data


def latest_resume(root: Path):
    """The newest resume checkpoint of a bundle root (or None)."""
    from monaiseg.handlers import latest_checkpoint

    return latest_checkpoint(root / "models" / "resume")


def train_in_process(
    bundle: Path, root: Path, data: dict, epochs: int = EPOCHS, keep_epoch1: Path | None = None, **overrides
) -> tuple[list[dict], int]:
    """Run the tiny training (`data`: tiny_run overrides) in this process for `epochs` full passes over
    the data, validating after epoch EPOCHS only, on one thread (the forked child runs on one thread,
    and float sums depend on the thread count). `keep_epoch1`: where to copy the resume checkpoint written
    after epoch 1 (copied when epoch 2 starts; the checkpointer keeps only the newest). Returns
    (validation metrics, iterations run)."""
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    workflow = ConfigWorkflow(
        config_file=[str(bundle / "configs" / n) for n in ("train.json", "tiny.json")],
        logging_file=False,
        bundle_root=str(root),
        **data,
        max_epochs=epochs,
        epoch_length=None,
        val_interval=EPOCHS,
        **overrides,
    )
    workflow.initialize()
    trainer = workflow.parser.get_parsed_content("train#trainer")
    iterations, metrics = [], []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: iterations.append(e.state.iteration))
    if keep_epoch1 is not None:

        def keep(engine) -> None:
            if engine.state.epoch == 2:  # every EPOCH_COMPLETED handler of epoch 1 has run
                path = latest_resume(root)
                assert path is not None and path.name == "resume_checkpoint_epoch=1.pt", path
                shutil.copyfile(path, keep_epoch1)

        trainer.add_event_handler(Events.EPOCH_STARTED, keep)
    if bundle.name not in NO_VALIDATION_DURING_TRAINING:
        evaluator = workflow.parser.get_parsed_content("validate#evaluator")
        evaluator.add_event_handler(Events.COMPLETED, lambda e: metrics.append(dict(e.state.metrics)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        workflow.run()
    finally:
        torch.set_num_threads(threads)
    workflow.finalize()
    return metrics, len(iterations)


def train_then_exit(bundle: Path, root: Path, data: dict) -> None:
    """Child process body (forked): train; never returns into pytest. One thread from the start: torch's
    OpenMP pool does not survive a fork (the child would hang in its first parallel op)."""
    code = 1
    try:
        torch.set_num_threads(1)
        train_in_process(bundle, root, data)
        code = 0
    finally:
        os._exit(code)


def run_torchrun(cmd: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """subprocess.run for a `torch.distributed.run` command line (one thread per process) that leaves no
    worker behind when the test is interrupted or times out: the workers run in their own sessions, so
    the launcher gets SIGTERM (it stops its workers) instead of subprocess.run's SIGKILL."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except BaseException:
        proc.terminate()
        try:
            proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr)
