"""Every bundle in bundles/ conforms, scales out and survives faults (parametrised over the folder, so
a new bundle is covered with no new code): model-zoo checks (scripts/verify_bundles.py), torchrun
with 2 CPU processes tracked on a real MLflow server, resume after SIGKILL, determinism.

The tiny data of each bundle comes from its `configs/tiny.json` key `synthetic_dataset`
(the `tiny_run` fixture of conftest.py)."""

from __future__ import annotations

import importlib.util
import json
import signal
from pathlib import Path

import pytest
import torch
from conftest import BUNDLE_IDS, BUNDLES, REPO

from .bundle_training import EPOCHS, NO_VALIDATION_DURING_TRAINING, latest_resume, train_in_process

spec = importlib.util.spec_from_file_location("verify_bundles", REPO / "scripts" / "verify_bundles.py")
verify_bundles = importlib.util.module_from_spec(spec)
spec.loader.exec_module(verify_bundles)

IDS = BUNDLE_IDS
SCHEMA = verify_bundles.DEFAULT_SCHEMA


def tiny(bundle: Path) -> dict:
    return json.loads((bundle / "configs" / "tiny.json").read_text())


# TorchScript export of a SAM-family network takes 5-20 s per bundle
CHECKS = [pytest.param(c, marks=pytest.mark.slow) if c == "torchscript" else c for c in verify_bundles.checks()]


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_model_zoo_checks(bundle, check, tmp_path):
    detail = verify_bundles.checks(SCHEMA)[check](bundle, tmp_path)
    assert detail


def test_verify_bundles_reports_a_broken_bundle(tmp_path):
    """The script's checks fail loudly: unformatted JSON, a version missing from the changelog, files missing."""
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(REPO / "bundles" / "unet_cells", broken, ignore=shutil.ignore_patterns("models", "eval"))
    meta_file = broken / "configs" / "metadata.json"
    meta = json.loads(meta_file.read_text())
    meta["version"] = "9.9.9"
    meta_file.write_text(json.dumps(meta))  # no indent either
    (broken / "large_files.yml").unlink()
    for check, needle in [
        ("version_in_changelog", "9.9.9"),
        ("json_format", "metadata.json"),
        ("files", "large_files.yml"),
    ]:
        with pytest.raises(verify_bundles.BundleCheckError, match=needle):
            verify_bundles.checks(SCHEMA)[check](broken, tmp_path)


# ---------------------------------------------------------------------------------------------
# torchrun (2 CPU processes, gloo) tracked on a real MLflow server
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_torchrun_two_processes_tracked_on_mlflow_server(bundle, tracked_torchrun, mlflow_server):
    from mlflow import MlflowClient

    train = json.loads((bundle / "configs" / "train.json").read_text())
    run = tracked_torchrun(bundle)  # train.json + multi_gpu_train.json + tiny.json, overlays asked for
    proc, tmp_path, experiment = run.proc, run.root, run.experiment
    assert proc.returncode == 0, f"{bundle.name} torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    iterations = tiny(bundle)["max_epochs"] * tiny(bundle)["epoch_length"]
    assert (proc.stdout + proc.stderr).count("train_loss:") == iterations  # rank 0 logs, rank 1 does not

    seen = [set((tmp_path / f"seen_rank{r}.txt").read_text().split()) for r in (0, 1)]
    # each rank trains on its own shard; DistributedSampler(even_divisible=True) may repeat up to
    # world_size - 1 items to make the shards equal, so at most one item's files may be on both ranks
    shared = seen[0] & seen[1]
    assert seen[0] and seen[1]
    if seen[0] | seen[1] != shared:  # (a tiny set of a single item, e.g. hf_sam's few-shot slice, cannot be sharded)
        assert len(shared) < min(len(seen[0]), len(seen[1])) / 2, f"ranks share their data: {seen}"
    assert set(torch.load(tmp_path / "models" / "model.pt", weights_only=True)) == {"model"}
    assert latest_resume(tmp_path) is not None  # the resumable checkpoint (rank 0)

    client = MlflowClient(tracking_uri=mlflow_server)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # rank 0 only
    run_id = runs[0].info.run_id
    assert runs[0].data.params
    assert len(client.get_metric_history(run_id, "train_loss")) == iterations  # loss per iteration
    if bundle.name in NO_VALIDATION_DURING_TRAINING:
        assert "validate" not in train, f"{bundle.name} validates now: drop it from NO_VALIDATION_DURING_TRAINING"
    else:
        key_metric = train["validate"]["best_model_saver"]["metric_name"]  # the model-selection metric
        assert len(client.get_metric_history(run_id, key_metric)) == tiny(bundle)["max_epochs"]  # per epoch
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert "model.pt" in artifacts, artifacts
    assert any(a.endswith(".json") for a in artifacts), f"no executed config among {artifacts}"
    if bundle.name not in NO_VALIDATION_DURING_TRAINING:  # validation overlays of each epoch, rank 0 only
        pictures = [a.path for a in client.list_artifacts(run_id, "overlays/epoch_001")]
        assert pictures and all(p.endswith(".png") for p in pictures), pictures
        assert len(pictures) == len(list((tmp_path / "eval" / "overlays" / "epoch_001").iterdir()))


# ---------------------------------------------------------------------------------------------
# resume after SIGKILL, and determinism
# ---------------------------------------------------------------------------------------------
def saved_state(root: Path, epoch: int) -> dict:
    path = latest_resume(root)
    assert path is not None and path.name == f"resume_checkpoint_epoch={epoch}.pt", path
    return torch.load(path, map_location="cpu", weights_only=True)


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_same_training(a: dict, b: dict, what: str) -> None:
    for name in ("model", "optimizer"):
        flat_a = _tensors(a[name])
        flat_b = _tensors(b[name])
        assert flat_a.keys() == flat_b.keys(), f"{what}: different {name} entries"
        for key in flat_a:
            assert torch.allclose(flat_a[key].float(), flat_b[key].float(), atol=1e-5, rtol=1e-4), (
                f"{what}: {name} {key}"
            )


def _tensors(tree, prefix="") -> dict:
    if isinstance(tree, torch.Tensor):
        return {prefix: tree}
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items() for k, v in _tensors(value, f"{prefix}/{key}").items()}
    if isinstance(tree, (list, tuple)):
        return {k: v for i, value in enumerate(tree) for k, v in _tensors(value, f"{prefix}/{i}").items()}
    return {}


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_same_seed_and_config_train_the_same(bundle, kill_resume_runs):
    """Determinism: two runs from scratch with the same seed and config (the uninterrupted reference and
    the run killed later, in a forked child) hold the same weights and optimizer state after epoch 1."""
    runs = kill_resume_runs(bundle)
    assert runs.killed_checkpoint == "resume_checkpoint_epoch=1.pt", runs.killed_checkpoint
    assert_same_training(load(runs.reference_epoch1), load(runs.killed_epoch1), "a second run from scratch")


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES, ids=IDS)
def test_resume_after_sigkill(bundle, kill_resume_runs):
    """A run killed with SIGKILL after its epoch-1 checkpoint (no partial files left) and resumed runs
    epoch 2 only and ends with the uninterrupted reference's weights, optimizer state and metrics."""
    runs = kill_resume_runs(bundle)
    assert runs.killed_exitcode == -signal.SIGKILL, f"the training ended (exit {runs.killed_exitcode}) before the kill"
    assert runs.killed_checkpoint == "resume_checkpoint_epoch=1.pt" and not runs.killed_leftovers, runs
    metrics, iterations = train_in_process(bundle, runs.killed, runs.data, resume=True)
    assert iterations == runs.reference_iterations // EPOCHS  # epoch 2 only: continued after the checkpoint
    expected_validations = 0 if bundle.name in NO_VALIDATION_DURING_TRAINING else 1
    assert len(metrics) == len(runs.reference_metrics) == expected_validations
    for got, expected in zip(metrics, runs.reference_metrics):
        assert got == pytest.approx(expected, abs=1e-5)
    assert_same_training(saved_state(runs.killed, EPOCHS), saved_state(runs.reference, EPOCHS), "the resumed run")
