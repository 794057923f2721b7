"""Inference runtimes for an image encoder on CPU: the eager module, or its ONNX export run by OpenVINO or
ONNX Runtime.

`ExportedEncoder` exports a module once (TorchScript-based ONNX export, opset 17, static input shape
(1, C, S, S), the weights as constants) and runs it with OpenVINO's CPU plugin or ONNX Runtime's CPU
execution provider, one sample of a batch at a time, with torch's CPU thread count. OpenVINO fuses
convolutions with their batch norms and GELUs, keeps activations in blocked channel layouts and runs the
attention MatMuls as brgemm kernels; on LiteMedSAM's TinyViT it is the fastest of the runtimes measured
(`scripts/bench_lite_medsam_runtime.py`, numbers in the lite_medsam bundle's docs). OpenVINO's default
precision on CPUs with bf16 instructions is bf16: `precision` is always set explicitly ("f32" unless asked).

Names: "eager", "openvino", "onnxruntime", and "auto" = `default_runtime(device)` (OpenVINO on CPU when
installed, else eager; eager on CUDA). A runtime that the device or the environment cannot do is refused
by `resolve_runtime` with one `RuntimeUnavailableError` when the network is built, before any data is read.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
import threading
from pathlib import Path

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

RUNTIMES = ("eager", "openvino", "onnxruntime")
PRECISIONS = {"openvino": ("f32", "bf16"), "onnxruntime": ("f32",), "eager": ("f32",)}
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
        with tempfile.TemporaryDirectory() as folder, torch.no_grad():
            path = Path(folder) / "model.onnx"
            torch.onnx.export(module, (example,), path, dynamo=False, opset_version=17, input_names=["x"])
            return path.read_bytes()
    finally:
        module.train(was_training)


class ExportedEncoder:
    """`module` exported for inputs (1, *shape[1:]) and compiled by `runtime` ("openvino" or "onnxruntime");
    calling it maps a float32 CPU batch (B, *shape[1:]) to the module's output (B, ...), sample by sample,
    one call at a time (threads, e.g. MONAI Label's requests, wait for each other). It is a frozen copy:
    later changes of the module's weights do not reach it."""

    def __init__(self, module: nn.Module, shape: tuple[int, ...], runtime: str, precision: str = "f32"):
        self.runtime, self.precision, self.shape = runtime, precision, (1, *shape[1:])
        self._lock = threading.Lock()
        model = export_onnx(module, torch.zeros(self.shape))
        threads = torch.get_num_threads()
        if runtime == "openvino":
            import openvino as ov

            core = ov.Core()
            compiled = core.compile_model(
                core.read_model(model, b""),
                "CPU",
                {
                    "INFERENCE_NUM_THREADS": threads,
                    "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_PRECISION_HINT": precision,
                },
            )
            request = compiled.create_infer_request()
            self._run = lambda x: request.infer({0: x})[0]
        elif runtime == "onnxruntime":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
            self._run = lambda x: session.run(None, {"x": x})[0]
        else:
            raise ValueError(f"ExportedEncoder runs 'openvino' or 'onnxruntime', not {runtime!r}")

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        samples = x.detach().to(torch.float32).numpy()
        with self._lock:
            return torch.from_numpy(np.concatenate([np.array(self._run(s[None])) for s in samples]))
