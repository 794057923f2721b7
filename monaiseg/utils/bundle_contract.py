"""The bundle contract, written once: the files and config keys a folder of `bundles/` must have (and the
optional ones), with what each is for. `scripts/verify_bundles.py`, the parametrised tests of
`tests/bundles/` and CONTRIBUTING's "Add a bundle" all read it; `bundles/_template/` satisfies it.

Plain data and JSON reading only (no MONAI import), so checking a bundle's structure is instant. Config keys
are MONAI ids (`#` between levels) in the raw JSON of one file; `metadata.json` is checked against the model
zoo's schema by `verify_bundles.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

TEMPLATE = "_template"  # bundles/_template/: what `new bundle` copies; folders starting with `_` are no bundles

REQUIRED_FILES = {
    "configs/metadata.json": "MONAI bundle metadata (model zoo schema): `version` a key of `changelog`, "
    "`network_data_format` for verify_net_in_out, `data_source`; MONAI Label through `supported_apps`",
    "configs/train.json": "training: the trainer, validation during training, checkpoints, tracking",
    "configs/evaluate.json": "evaluation, merged over train.json: metrics of `validate#evaluator` on the test "
    "split, report.html",
    "configs/inference.json": "inference on one input or the test split (standalone, no train.json)",
    "configs/batch_inference.json": "merged over inference.json: a folder (`input_dir`, `input_suffix`) or a "
    "list (`input_list`) of inputs, one output each",
    "configs/multi_gpu_train.json": "merged over train.json: torchrun (DDP, DistributedSampler, rank-0 handlers)",
    "configs/multi_gpu_evaluate.json": "merged over train.json + evaluate.json: the evaluation sharded over "
    "torchrun ranks, files written on rank 0",
    "configs/multi_gpu_inference.json": "merged over inference.json + batch_inference.json: the inputs sharded "
    "over torchrun ranks",
    "configs/tiny.json": "merged over any config: a one-minute CPU run on the synthetic data (tests)",
    "configs/logging.conf": "the logging setup `monai.bundle run --logging_file` reads",
    "docs/README.md": "what, data, commands, metrics table (paper vs. this bundle), switches, compute",
    "LICENSE": "the bundle's licence (a bundle stands alone)",
    "large_files.yml": "where official weights are downloaded from (`download_large_files`); may be empty",
}

OPTIONAL_FILES = {
    "configs/inference_trt.json": "merged over inference.json: the network through MONAI's trt_compile; bundles "
    "without one are listed in README's TensorRT section (tests/networks/test_tensorrt.py WITHOUT_TRT)",
    "configs/evaluate_*.json": "further evaluations merged over train.json (multi_gpu_evaluate.json must merge "
    "over each)",
    "configs/train_*.json": "further trainings (stages, variants) merged over train.json",
    "configs/inference_*.json": "further inference modes merged over inference.json",
    "configs/*.json": "any other override (a variant, a data layout, CPU fine-tuning)",
}

# Files identical in every bundle: the template's copies, kept in sync by tests/bundles/test_bundle_template.py.
# A bundle that needs its own copy is listed with the reason.
SHARED_FILES = {
    "LICENSE": {},
    "configs/logging.conf": {},
    "configs/multi_gpu_evaluate.json": {
        "hf_sam": "no validation during training: shards `evaluate#dataset` and merges organ metrics on rank 0",
    },
    "configs/multi_gpu_inference.json": {"hf_sam": "its dataset is `infer_dataset` (slices of NIfTI volumes)"},
}

# Bundles whose train.json does not validate (no `validate`, no model-selection metric), with the reason (also
# in their docs); every other bundle validates during training.
NO_VALIDATION_DURING_TRAINING = {
    "hf_sam": "as upstream SAMed / HF-SAM: Synapse has no validation split; evaluate.json scores the test volumes",
}

# The precision switches: the same keys and defaults in train.json and inference.json (monaiseg.utils.precision)
PRECISION_SWITCHES = {
    "amp": "$torch.cuda.is_available()",
    "amp_dtype": "bfloat16",
    "channels_last": False,
    "compile": False,
}
# every Supervised* engine runs its network through this expression, and its inferer through
# `monaiseg.inferers.with_amp(` (engines with an `iteration_update` apply amp themselves)
PREPARE_NETWORK = "monaiseg.utils.prepare_network(@network, @device, @channels_last, @compile)"
WITH_AMP = "monaiseg.inferers.with_amp("

REQUIRED_KEYS = {
    "train.json": {
        "bundle_root": "where models/ and eval/ go (tests point it to a temporary folder)",
        "dataset_dir": "the data folder (tests: the synthetic set of tiny.json)",
        "output_dir": "eval/: overlays, reports, the MLflow store",
        "device": "the engines' device",
        **{k: f"precision switch, default {v!r}" for k, v in PRECISION_SWITCHES.items()},
        "checkpoint": "initial weights (null: random or foundation weights)",
        "model_path": "the trained model (models/model.pt); evaluate.json reads it",
        "learning_rate": "the optimizer's learning rate (the NaN test sets it to inf)",
        "max_epochs": "training length",
        "epoch_length": "iterations per epoch (null: the whole loader)",
        "seed": "set_determinism seed (the determinism test)",
        "resume": "continue from the newest checkpoint in models/resume (ResumableCheckpoint)",
        "network_def": "the network (verify_net_in_out, TorchScript export)",
        "network": "network_def with its weights on the device",
        "train#trainer": "a SupervisedTrainer",
        "train#handlers": "a list (MONAI's tracking settings append its MLFlowHandler): StopOnNonFiniteLoss, "
        "ResumableCheckpoint, the train_loss StatsHandler",
        "train#dataset": "the training dataset (multi_gpu_train.json shards it)",
        "train#dataloader": "the training loader",
        "initialize": "set_determinism, folders, add_to_mlflow_run; ValidationOverlays where it validates",
        "run": "runs the trainer",
    },
    "evaluate.json": {
        "initialize": "a list with monaiseg.handlers.EvaluationReport(...) (report.html)",
        "run": "runs the evaluator",
    },
    "inference.json": {
        "bundle_root": "where models/ and eval/ are",
        "device": "the evaluator's device",
        **{k: f"precision switch, default {v!r}" for k, v in PRECISION_SWITCHES.items()},
        "checkpoint": "the weights to load (verify_bundles sets it to none)",
        "network_def": "the network (verify_net_in_out, TorchScript export)",
        "network": "network_def with its weights, in eval mode",
        "evaluator": "a SupervisedEvaluator",
        "output_dir": "where predictions go",
        "initialize": "a list, set_determinism first",
        "run": "runs the evaluator",
    },
    "batch_inference.json": {
        "input_dir": "a folder of inputs (null: use input_list)",
        "input_suffix": "the glob of inputs in input_dir",
        "input_list": "a list of files or a .txt of them (null: use input_dir)",
        "batch_items": "monaiseg.data.batch_items(...): the items, with their sidecars",
    },
    "multi_gpu_train.json": {
        "network": "DistributedDataParallel of the network",
        "train#sampler": "DistributedSampler of train#dataset",
        "initialize": "init_process_group first; ValidationOverlays where it validates",
        "finalize": "destroy_process_group last",
    },
    "multi_gpu_evaluate.json": {
        "+initialize": "appended to evaluate.json's: init_process_group (nccl on GPUs, gloo on CPUs)",
        "finalize": "destroy_process_group last",
    },
    "multi_gpu_inference.json": {
        "sampler": "DistributedSampler of the dataset, in order, no padding",
        "dataloader#sampler": "@sampler",
        "+initialize": "init_process_group",
        "finalize": "destroy_process_group last",
    },
    "tiny.json": {
        "max_epochs": "1: the tests count iterations as max_epochs * epoch_length",
        "epoch_length": "a few iterations",
        "synthetic_dataset": '{"_target_": "monaiseg.data.<generator>", **kwargs}: called with the output folder '
        "first, it writes the tiny data (conftest.tiny_run)",
    },
}

# required where train.json validates during training (every bundle not in NO_VALIDATION_DURING_TRAINING)
VALIDATION_KEYS = {
    "train.json": {
        "val_interval": "validate every N epochs",
        "overlay_interval": "validation overlays every N epochs (0: off)",
        "validate#evaluator": "a SupervisedEvaluator run by the trainer's ValidationHandler",
        "validate#handlers": "a list (MONAI's tracking settings append its MLFlowHandler)",
        "validate#best_model_saver": "monaiseg.handlers.BestModelSaver, also in ResumableCheckpoint's objects",
        "validate#best_model_saver#metric_name": "the model-selection metric (logged per epoch to MLflow)",
    },
    "tiny.json": {"overlay_interval": "0: overlays off unless a test asks"},
}

OPTIONAL_KEYS = {
    "tiny.json": {"synthetic_overrides": "more overrides of a tiny run (e.g. the class names of the synthetic set)"},
    "batch_inference.json": {"sidecars": "{key: '{name}_prompts.json'}: per-input files (prompts, labels)"},
    "train.json": {"mlflow_params": "parameters logged to MLflow", "mlflow_artifacts": "files logged to MLflow"},
}


def is_bundle(path: Path) -> bool:
    """A bundle folder: holds configs/metadata.json and its name does not start with `_` (the template)."""
    return not path.name.startswith("_") and (path / "configs" / "metadata.json").is_file()


def discover_bundles(root: Path) -> list[Path]:
    """The bundles in `root`, sorted by name (bundles/_template/ and other `_` folders skipped)."""
    return sorted(p for p in Path(root).iterdir() if p.is_dir() and is_bundle(p))


def has_key(config: dict, key: str) -> bool:
    """`key` ('a#b#c') is in the raw JSON `config`, nested or written as an id at the top level."""
    if key in config:
        return True
    node = config
    for part in key.split("#"):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def missing_files(bundle: Path) -> list[str]:
    """The required files `bundle` lacks."""
    return [f for f in REQUIRED_FILES if not (Path(bundle) / f).is_file()]


def validates_during_training(bundle: Path) -> bool:
    return Path(bundle).name not in NO_VALIDATION_DURING_TRAINING


def missing_keys(bundle: Path) -> list[str]:
    """'config: key' for each required key `bundle` lacks (configs that are missing or not JSON are named)."""
    bundle = Path(bundle)
    required = {name: dict(keys) for name, keys in REQUIRED_KEYS.items()}
    if validates_during_training(bundle):
        for name, keys in VALIDATION_KEYS.items():
            required[name].update(keys)
    missing = []
    for name, keys in required.items():
        path = bundle / "configs" / name
        try:
            config = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            missing.append(f"{name}: cannot be read ({type(exc).__name__})")
            continue
        missing += [f"{name}: {key}" for key in keys if not has_key(config, key)]
    return missing


PLACEHOLDER = "TEMPLATE_NAME"  # in the template's text files; `new_bundle` writes the bundle's name there
TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "bundles" / TEMPLATE


def new_bundle(name: str, bundles_dir: str | Path, template: str | Path = TEMPLATE_DIR) -> Path:
    """Copy the template to `bundles_dir/name`, the placeholder replaced by `name` in its text files; the
    template's models/ and eval/ (outputs of a run in place) are not copied. Returns the new bundle folder.
    ValueError for a name that is not lower-case snake case or starts with `_`, FileExistsError when the folder
    exists (nothing is written then)."""
    import re
    import shutil

    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ValueError(f"bundle name {name!r}: lower-case letters, digits and _, starting with a letter")
    target = Path(bundles_dir) / name
    if target.exists():
        raise FileExistsError(f"{target} exists")
    template = Path(template)
    if not (template / "configs" / "metadata.json").is_file():
        raise FileNotFoundError(f"{template} is not a bundle template (no configs/metadata.json)")
    shutil.copytree(template, target, ignore=shutil.ignore_patterns("models", "eval", "__pycache__"))
    for path in sorted(target.rglob("*")):
        if path.is_file() and path.suffix in (".json", ".md", ".yml", ".conf", ".txt"):
            text = path.read_text()
            if PLACEHOLDER in text:
                path.write_text(text.replace(PLACEHOLDER, name))
    return target
