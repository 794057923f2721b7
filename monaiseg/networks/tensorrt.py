"""TensorRT for a bundle's network, the MONAI model zoo's way (`configs/inference_trt.json`).

`trt_network` hands the named submodules (a SAM encoder: "image_encoder"; None: the whole network) to MONAI's
`trt_compile`, which builds a TensorRT engine from an ONNX export on the first forward call and keeps it as
`<plan_base>.<submodule>.plan` beside the weights (rebuilt when the weights file is newer). Before that it
checks every submodule name against the network (the error lists its top-level modules), so a bad config
fails when the network is built, not mid-run, and creates the plan folder.
Where CUDA, TensorRT or polygraphy is missing the network is returned unchanged (eager PyTorch) with one
logged warning naming what is missing: the same config runs everywhere.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.networks import trt_compile
from torch import nn

logger = logging.getLogger(__name__)


def tensorrt_missing() -> list[str]:
    """What this machine lacks for TensorRT engines: a subset of ["CUDA", "tensorrt", "polygraphy"]."""
    missing = [] if torch.cuda.is_available() else ["CUDA"]
    return missing + [name for name in ("tensorrt", "polygraphy") if importlib.util.find_spec(name) is None]


def trt_network(
    network: nn.Module,
    plan_base: str | Path,
    submodules: str | Sequence[str] | None = None,
    args: dict | None = None,
) -> nn.Module:
    """`network` with `submodules` (dotted names; None: all of it) run by TensorRT engines saved as
    `<plan_base>.<submodule>.plan`; `args` go to MONAI's `TrtCompiler` (precision, dynamic_batchsize,
    fallback, ...). Returns `network` itself, unchanged where TensorRT cannot run (logged)."""
    names = [submodules] if isinstance(submodules, str) else list(submodules or [])
    for name in names:
        try:
            network.get_submodule(name)
        except AttributeError:
            children = ", ".join(n for n, _ in network.named_children())
            raise ValueError(
                f"trt submodule {name!r} is not in {type(network).__name__} (its top-level modules: {children})"
            ) from None
    missing = tensorrt_missing()
    if missing:
        logger.warning(f"TensorRT not used, {type(network).__name__} runs in eager PyTorch: no {', '.join(missing)}")
        return network
    Path(plan_base).parent.mkdir(parents=True, exist_ok=True)
    return trt_compile(network, str(plan_base), args=dict(args or {}), submodule=names or None)
