"""Trainings shared by several bundle tests: each runs once per session and bundle, on first use."""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from .bundle_training import latest_resume, run_torchrun, train_in_process, train_then_exit


@dataclass(frozen=True)
class KillResumeRuns:
    """The trainings of one bundle that the determinism and resume tests share (see `kill_resume_runs`)."""

    data: dict  # the tiny_run overrides
    reference: Path  # bundle root of the uninterrupted run
    reference_metrics: list[dict]  # its validation metrics (after the last epoch)
    reference_iterations: int
    reference_epoch1: Path  # its resume checkpoint after epoch 1
    killed: Path  # bundle root of the killed run (resumed in place by the resume test)
    killed_exitcode: int | None
    killed_checkpoint: str  # name of the newest resume checkpoint the killed run left
    killed_leftovers: list[str]  # other files it left in models/resume
    killed_epoch1: Path  # a copy of that checkpoint, taken before anything resumes


@pytest.fixture(scope="session")
def kill_resume_runs(tiny_run, tmp_path_factory):
    """bundle folder -> `KillResumeRuns`: two trainings of train.json + tiny.json on the bundle's tiny data,
    EPOCHS full passes on one thread (`bundle_training.train_in_process`), run once per bundle:
    - an uninterrupted reference, validated after its last epoch; the resume checkpoint it writes after
      epoch 1 is kept;
    - the same training in a forked child, SIGKILLed as soon as its epoch-1 checkpoint exists.
    The two epoch-1 checkpoints come from the same config and seed (determinism test); the killed run is
    resumed by the resume test and must end as the reference did."""
    made: dict[str, KillResumeRuns] = {}

    def get(bundle: Path) -> KillResumeRuns:
        if bundle.name not in made:
            root = tmp_path_factory.mktemp(f"kill_resume_{bundle.name}")
            data = tiny_run(bundle)
            reference, killed = root / "reference", root / "killed"
            reference_epoch1 = root / "reference_epoch1.pt"
            metrics, iterations = train_in_process(bundle, reference, data, keep_epoch1=reference_epoch1)

            child = multiprocessing.get_context("fork").Process(target=train_then_exit, args=(bundle, killed, data))
            child.start()
            deadline = time.monotonic() + 600
            while child.is_alive() and latest_resume(killed) is None and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(child.pid, signal.SIGKILL)
            child.join()
            checkpoint = latest_resume(killed)
            killed_epoch1 = root / "killed_epoch1.pt"
            if checkpoint is not None:
                shutil.copyfile(checkpoint, killed_epoch1)
            resume_dir = killed / "models" / "resume"
            leftovers = sorted(p.name for p in resume_dir.glob("*") if not p.name.startswith("resume_checkpoint"))
            made[bundle.name] = KillResumeRuns(
                data=data,
                reference=reference,
                reference_metrics=metrics,
                reference_iterations=iterations,
                reference_epoch1=reference_epoch1,
                killed=killed,
                killed_exitcode=child.exitcode,
                killed_checkpoint=checkpoint.name if checkpoint is not None else "",
                killed_leftovers=leftovers,
                killed_epoch1=killed_epoch1,
            )
        return made[bundle.name]

    return get


# test-only: each rank appends the files of its batches to <bundle_root>/seen_rank<r>.txt
RECORD_FILES = (
    "$@train#trainer.add_event_handler(monai.engines.workflow.Events.ITERATION_COMPLETED, "
    "lambda e: open(@bundle_root + '/seen_rank' + str(torch.distributed.get_rank()) + '.txt', 'a')"
    ".write(''.join(f + chr(10) for f in monaiseg.utils.batch.batch_source_names(e.state.batch))))"
)


@dataclass(frozen=True)
class TrackedTorchrun:
    """A tiny torchrun training (2 CPU processes) tracked on the session's MLflow server."""

    proc: subprocess.CompletedProcess
    root: Path  # its bundle root (seen_rank<r>.txt, models/, eval/overlays/)
    experiment: str  # its MLflow experiment name


@pytest.fixture(scope="session")
def tracked_torchrun(tiny_run, mlflow_server, tmp_path_factory):
    """bundle folder -> `TrackedTorchrun`: train.json + multi_gpu_train.json + tiny.json with torchrun on 2
    processes, `--tracking mlflow` on `mlflow_server` (experiment `torchrun_<bundle>`), validation overlays
    asked for (`overlay_interval` 1); each rank records the files of its batches. Run once per bundle (the
    conformance test and the browser check share it)."""
    made: dict[str, TrackedTorchrun] = {}

    def get(bundle: Path) -> TrackedTorchrun:
        if bundle.name not in made:
            root = tmp_path_factory.mktemp(f"torchrun_{bundle.name}")
            train = json.loads((bundle / "configs" / "train.json").read_text())
            record = root / "record_batches.json"
            record.write_text(json.dumps({"run": [RECORD_FILES, *train["run"]]}))
            names = ("train.json", "multi_gpu_train.json", "tiny.json")
            configs = [str(bundle / "configs" / n) for n in names] + [str(record)]
            experiment = f"torchrun_{bundle.name}"
            data = {**tiny_run(bundle), "overlay_interval": 1}
            overrides = [a for k, v in data.items() for a in (f"--{k}", v if isinstance(v, str) else repr(v))]
            cmd = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                "--nproc_per_node=2",
                "-m",
                "monai.bundle",
                "run",
                "--config_file",
                str(configs),
                "--bundle_root",
                str(root),
                *overrides,
                "--logging_file",
                str(bundle / "configs" / "logging.conf"),
                "--tracking",
                "mlflow",
                "--tracking_uri",
                mlflow_server,
                "--experiment_name",
                experiment,
            ]
            made[bundle.name] = TrackedTorchrun(run_torchrun(cmd, cwd=root), root, experiment)
        return made[bundle.name]

    return get
