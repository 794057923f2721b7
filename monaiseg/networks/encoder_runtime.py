"""Inference runtimes for an image encoder on CPU: the eager module, or its ONNX export run by OpenVINO or
ONNX Runtime.

`ExportedEncoder` exports a module once (TorchScript-based ONNX export, opset 17, static input shape
(1, C, S, S), the weights as constants) and runs it with OpenVINO's CPU plugin or ONNX Runtime's CPU
execution provider, one sample of a batch at a time, with torch's CPU thread count. OpenVINO fuses
convolutions with their batch norms and GELUs, keeps activations in blocked channel layouts and runs the
attention MatMuls as brgemm kernels; on LiteMedSAM's TinyViT it is the fastest of the runtimes measured
(`scripts/bench_lite_medsam_runtime.py`, numbers in the lite_medsam bundle's docs). OpenVINO's default
precision on CPUs with bf16 instructions is bf16: `precision` is always set explicitly ("f32" unless asked).
OpenVINO's "int8" runs an NNCF-quantised copy of the cached f32 IR (`monaiseg.networks.quantize`; needs
`nncf` to build, not to run a cached one). "auto" = `auto_precision`: the fastest precision whose accuracy
gate passed for these weights on this machine, as recorded by `record_gate`
(`scripts/bench_lite_medsam_runtime.py --record`), else "f32"; int8 only where NNCF is installed (else one
logged line and the next one).

Names: "eager", "openvino", "onnxruntime", and "auto" = `default_runtime(device)` (OpenVINO on CPU when
installed, else eager; eager on CUDA). A runtime that the device or the environment cannot do is refused
by `resolve_runtime` with one `RuntimeUnavailableError` when the network is built, before any data is read.

On-disk cache (`ModelCache`): the exported model is kept in `cache_root()` (`$MONAISEG_CACHE_DIR`, else
`~/.cache/monaiseg`) under `encoders/<key>/`, the key being the SHA-256 of the module's weights with its
class, the input shape, the runtime, the precision and the package versions; OpenVINO's compiled blob goes
beside it (its `CACHE_DIR`). A later process with the same weights reads the entry instead of exporting
again, and OpenVINO imports the blob instead of compiling. Entries are written to a temporary folder and
moved in with `os.replace`; a corrupt entry (a file whose checksum differs, a blob that does not import) is
rebuilt with one logged warning.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

RUNTIMES = ("eager", "openvino", "onnxruntime")
PRECISIONS = {"openvino": ("f32", "bf16", "int8", "auto"), "onnxruntime": ("f32", "auto"), "eager": ("f32", "auto")}
_PACKAGES = {"openvino": "openvino", "onnxruntime": "onnxruntime"}


class RuntimeUnavailableError(RuntimeError):
    """An encoder runtime that this device or environment cannot run."""


def runtime_installed(runtime: str) -> bool:
    """Whether the packages of `runtime` (and `onnx` for the export) can be imported; eager: always."""
    if runtime == "eager":
        return True
    return all(importlib.util.find_spec(p) is not None for p in (_PACKAGES[runtime], "onnx"))


def default_runtime(device: str | torch.device = "cpu") -> str:
    """ "openvino" on CPU when installed, else "eager" (on CUDA the eager module runs on the GPU)."""
    return "openvino" if torch.device(device).type == "cpu" and runtime_installed("openvino") else "eager"


def resolve_runtime(runtime: str, device: str | torch.device = "cpu", precision: str = "f32") -> str:
    """The runtime `runtime` ("auto" or one of `RUNTIMES`, any case) stands for on `device`; a `ValueError`
    for an unknown name or precision, `RuntimeUnavailableError` for one the device or environment cannot run."""
    name = str(runtime).strip().lower()
    if name == "auto":
        name = default_runtime(device)
        logger.info("encoder runtime 'auto' on %s: %s", device, name)
    if name not in RUNTIMES:
        raise ValueError(
            f"encoder runtime {runtime!r} is unknown: choose one of 'auto', {', '.join(map(repr, RUNTIMES))}"
        )
    if precision not in PRECISIONS[name]:
        raise ValueError(
            f"encoder runtime {name!r} has no precision {precision!r}: choose one of {', '.join(PRECISIONS[name])}"
        )
    if name != "eager" and torch.device(device).type != "cpu":
        raise RuntimeUnavailableError(
            f"encoder runtime {name!r} runs on CPU only, the device is {device}: use 'eager' or 'auto'"
        )
    if not runtime_installed(name):
        raise RuntimeUnavailableError(
            f"encoder runtime {name!r} needs the packages {_PACKAGES[name]} and onnx, not installed here: "
            "run `bash scripts/setup_env.sh`, or use 'eager' or 'auto'"
        )
    return name


def export_onnx(module: nn.Module, example: torch.Tensor) -> bytes:
    """ONNX model (bytes, opset 17) of `module` in eval mode for inputs shaped like `example`."""
    was_training = module.training
    module.eval()
    try:
        with tempfile.TemporaryDirectory() as folder, torch.no_grad(), warnings.catch_warnings():
            if not os.environ.get("MONAISEG_VERBOSE"):  # benign: outputs match eager (test_lite_medsam_runtime)
                warnings.filterwarnings("ignore", "Iterating over a tensor", torch.jit.TracerWarning)
            path = Path(folder) / "model.onnx"
            torch.onnx.export(module, (example,), path, dynamo=False, opset_version=17, input_names=["x"])
            return path.read_bytes()
    finally:
        module.train(was_training)


CACHE_ENV = "MONAISEG_CACHE_DIR"
EXPORT_FORMAT = 1  # part of every cache key: raise it when the export (or a module's exported graph) changes


def cache_root() -> Path:
    """Folder of monaiseg's on-disk caches: `$MONAISEG_CACHE_DIR`, else `~/.cache/monaiseg`."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "monaiseg").expanduser()


def weights_sha256(module: nn.Module) -> str:
    """SHA-256 of `module`'s state dict (names, dtypes, shapes and bytes of every tensor)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    names = ("torch", "onnx", "openvino", "onnxruntime", "nncf")
    return {n: importlib.metadata.version(n) for n in names if importlib.util.find_spec(n) is not None}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class ModelCache:
    """Folders of built model files under `root`/encoders, one per key (a JSON-able dict).

    `entry(key, build)` returns the folder of `key`, calling `build(folder)` to write its files first when
    there is none or it is corrupt. A finished entry holds `entry.json`: the key and the SHA-256 of every
    file `build` wrote (checked at each `entry` call); files written into it later (OpenVINO's blobs in
    `blobs/`) are not part of it."""

    MANIFEST = "entry.json"

    def __init__(self, root: str | Path | None = None):
        self.root = (Path(root) if root is not None else cache_root()) / "encoders"

    def folder(self, key: dict[str, Any]) -> Path:
        """Where the entry of `key` lives (whether or not it exists)."""
        text = json.dumps(key, sort_keys=True)
        return self.root / hashlib.sha256(text.encode()).hexdigest()[:32]

    def problem(self, folder: Path, key: dict[str, Any]) -> str | None:
        """Why the entry in `folder` cannot be used for `key` (None: it can)."""
        try:
            manifest = json.loads((folder / self.MANIFEST).read_text())
            if manifest["key"] != json.loads(json.dumps(key)):
                return "its key differs"
            for name, digest in manifest["files"].items():
                if _sha256_file(folder / name) != digest:
                    return f"{name} has another checksum"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return None

    def entry(self, key: dict[str, Any], build: Callable[[Path], None]) -> Path:
        """The folder of `key`'s entry, built (atomically: a temporary folder moved in) when missing or corrupt."""
        folder = self.folder(key)
        if folder.exists():
            problem = self.problem(folder, key)
            if problem is None:
                return folder
            logger.warning("model cache entry %s is corrupt (%s): rebuilding it", folder, problem)
            shutil.rmtree(folder, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".building-", dir=self.root))
        try:
            build(staging)
            files = {p.name: _sha256_file(p) for p in sorted(staging.iterdir()) if p.is_file()}
            (staging / self.MANIFEST).write_text(json.dumps({"key": key, "files": files}, indent=1, sort_keys=True))
            try:
                os.replace(staging, folder)
            except OSError:  # another process moved its copy in first: use that one when it is whole
                if self.problem(folder, key) is not None:
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return folder


def _build_onnx(module: nn.Module, shape: tuple[int, ...]) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        (folder / "model.onnx").write_bytes(export_onnx(module, torch.zeros(shape)))

    return build


def _build_openvino_ir(module: nn.Module, shape: tuple[int, ...]) -> Callable[[Path], None]:
    """Writes the OpenVINO IR (f32) of `module`'s ONNX export."""

    def build(folder: Path) -> None:
        import openvino as ov

        model = ov.Core().read_model(export_onnx(module, torch.zeros(shape)), b"")
        ov.save_model(model, folder / "model.xml", compress_to_fp16=False)

    return build


def _build_int8_ir(f32_folder: Path, calibration: list[np.ndarray]) -> Callable[[Path], None]:
    """Writes the int8 IR quantised (`quantize.quantize_openvino`) from the f32 IR in `f32_folder`."""

    def build(folder: Path) -> None:
        import openvino as ov

        from .quantize import quantize_openvino

        model = quantize_openvino(ov.Core().read_model(f32_folder / "model.xml"), calibration)
        ov.save_model(model, folder / "model.xml", compress_to_fp16=False)

    return build


def _calibration_sha256(calibration: list[np.ndarray]) -> str:
    digest = hashlib.sha256()
    for array in calibration:
        digest.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
    return digest.hexdigest()


def gate_path(weights: str) -> Path:
    """The gate record of the weights with SHA-256 `weights` (`weights_sha256`) on this machine."""
    return cache_root() / "gates" / f"{weights}.json"


def record_gate(weights: str, precision: str, passed: bool, seconds: float, **details: Any) -> Path:
    """Record (atomically, merged with the others) whether OpenVINO `precision` passed the accuracy gate
    for `weights` and its encoder seconds per image measured beside the others."""
    path = gate_path(weights)
    path.parent.mkdir(parents=True, exist_ok=True)
    records = read_gates(weights)
    records[precision] = {"passed": bool(passed), "seconds": float(seconds), **details}
    staging = path.with_name(f".{path.name}.{os.getpid()}.partial")
    staging.write_text(json.dumps(records, indent=1, sort_keys=True))
    os.replace(staging, path)
    return path


def read_gates(weights: str) -> dict[str, dict[str, Any]]:
    """The gate records of `weights` ({} when none, or unreadable: logged)."""
    path = gate_path(weights)
    if not path.is_file():
        return {}
    try:
        records = json.loads(path.read_text())
        return {k: v for k, v in records.items() if isinstance(v, dict) and {"passed", "seconds"} <= v.keys()}
    except (OSError, ValueError) as exc:
        logger.warning("gate record %s is unreadable (%s): ignored", path, exc)
        return {}


def auto_precision(weights: str) -> str:
    """The fastest OpenVINO precision recorded as passing the gate for `weights` (f32 always qualifies;
    int8 only with NNCF installed), "f32" without records; logged in one line."""
    records = read_gates(weights)
    timed = {p: r["seconds"] for p, r in records.items() if (r["passed"] or p == "f32") and p in PRECISIONS["openvino"]}
    choice = min(timed, key=timed.__getitem__) if timed else "f32"
    if choice == "int8" and importlib.util.find_spec("nncf") is None:
        timed.pop("int8")
        choice = min(timed, key=timed.__getitem__) if timed else "f32"
        logger.warning("encoder precision 'auto': int8 passed the gate but nncf is not installed; using %s", choice)
    else:
        logger.info("encoder precision 'auto': %s (gate records: %s)", choice, timed or "none")
    return choice


def compile_openvino(folder: Path, config: dict[str, Any]) -> tuple[Any, bool]:
    """OpenVINO's compiled model of `folder`/model.xml and whether its blob was imported from `folder`/blobs
    (OpenVINO's cache, keyed by the compile options); an unusable blob folder is emptied, with one warning,
    and compiled again."""
    import openvino as ov

    blobs = folder / "blobs"
    config = {**config, "CACHE_DIR": str(blobs)}
    try:
        compiled = ov.Core().compile_model(str(folder / "model.xml"), "CPU", config)
    except RuntimeError as exc:
        logger.warning("OpenVINO blob cache %s is unusable (%s): compiling again", blobs, str(exc).splitlines()[0])
        shutil.rmtree(blobs, ignore_errors=True)
        compiled = ov.Core().compile_model(str(folder / "model.xml"), "CPU", config)
    return compiled, bool(compiled.get_property("LOADED_FROM_CACHE"))


class ExportedEncoder:
    """`module` exported for inputs (1, *shape[1:]) and compiled by `runtime` ("openvino" or "onnxruntime");
    calling it maps a float32 CPU batch (B, *shape[1:]) to the module's output (B, ...), sample by sample,
    one call at a time (threads, e.g. MONAI Label's requests, wait for each other). It is a frozen copy:
    later changes of the module's weights do not reach it.

    The export is read from / written to `cache` (default `ModelCache()`: `cache_root()`); `folder` is its
    entry, `loaded_from_cache` whether OpenVINO imported its compiled blob instead of compiling."""

    def __init__(
        self,
        module: nn.Module,
        shape: tuple[int, ...],
        runtime: str,
        precision: str = "f32",
        cache: ModelCache | None = None,
    ):
        if runtime not in ("openvino", "onnxruntime"):
            raise ValueError(f"ExportedEncoder runs 'openvino' or 'onnxruntime', not {runtime!r}")
        self.shape = (1, *shape[1:])
        self._lock = threading.Lock()
        self.loaded_from_cache = False
        cache = cache or ModelCache()
        self.weights = weights_sha256(module)
        if precision == "auto":
            precision = auto_precision(self.weights) if runtime == "openvino" else "f32"
        if precision == "int8" and importlib.util.find_spec("nncf") is None:
            logger.warning("encoder precision int8 needs nncf (not installed) to quantise: running OpenVINO f32")
            precision = "f32"
        self.runtime, self.precision = runtime, precision
        key = {
            "format": EXPORT_FORMAT,
            "module": f"{type(module).__module__}.{type(module).__qualname__}",
            "weights_sha256": self.weights,
            "shape": list(self.shape),
            "model": "onnx" if runtime == "onnxruntime" else "openvino-ir-f32",
            "versions": package_versions(),
        }
        if runtime == "onnxruntime":
            build = _build_onnx(module, self.shape)
        else:
            build = _build_openvino_ir(module, self.shape)
        if precision == "int8":  # quantised from the f32 entry (built first when missing): one export for both
            from . import quantize

            calibration = quantize.calibration_inputs(self.shape[-1])
            build = _build_int8_ir(cache.entry(key, build), calibration)
            key = key | {"model": "openvino-ir-int8", "calibration_sha256": _calibration_sha256(calibration)}
            key |= {"mixed_scopes": list(quantize.MIXED_SCOPES), "bias_correction": quantize.BIAS_CORRECTION}
        self.folder = cache.entry(key, build)
        threads = torch.get_num_threads()
        if runtime == "openvino":
            config = {
                "INFERENCE_NUM_THREADS": threads,
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32" if precision == "int8" else precision,
            }
            compiled, self.loaded_from_cache = compile_openvino(self.folder, config)
            request = compiled.create_infer_request()
            self._run = lambda x: request.infer({0: x})[0]
        else:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(str(self.folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
            self._run = lambda x: session.run(None, {"x": x})[0]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        samples = x.detach().to(torch.float32).numpy()
        with self._lock:
            return torch.from_numpy(np.concatenate([np.array(self._run(s[None])) for s in samples]))
