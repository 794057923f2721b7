"""Mixed precision, channels-last and `torch.compile`: the switches every bundle shares.

Config keys (each bundle's train.json / inference.json): `amp` (autocast; on by default where CUDA is
present), `amp_dtype` ("bfloat16" or "float16", also "bf16" / "fp16"), `channels_last` and
`compile` (both off by default). Autocast is applied by the engines' inferer
(`monaiseg.inferers.with_amp`) on the engine's own device type, so `amp: true` works on CPU too;
a GradScaler is used only where float16 needs one (CUDA; bfloat16 has float32's exponent range).
A bad setting is refused when the config is parsed, before anything runs; a compile that cannot be
done falls back to eager with one logged warning.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import Mapping
from typing import Any

import torch

from .batch import unwrap_model
from .config import as_bool

logger = logging.getLogger(__name__)

AMP_DTYPES = {
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def _device(device: str | torch.device) -> torch.device:
    return device if isinstance(device, torch.device) else torch.device(device)


def _describe(device: torch.device) -> str:
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        return f"{device} ({torch.cuda.get_device_name(index)}, compute capability {major}.{minor})"
    return str(device)


def parse_amp_dtype(name: str | torch.dtype, device: str | torch.device | None = None) -> torch.dtype:
    """The autocast dtype named by `name` ("bfloat16" / "float16", their short forms, or the dtype itself);
    ValueError (naming `device` when given) for any other name. Checks the name only, not the device."""
    dtype = name if isinstance(name, torch.dtype) else AMP_DTYPES.get(str(name).strip().lower())
    if dtype not in (torch.bfloat16, torch.float16):
        where = f" (autocast on {device})" if device is not None else ""
        raise ValueError(f"amp_dtype must be one of {sorted(AMP_DTYPES)}{where}, got {name!r}")
    return dtype


def amp_dtype(name: str | torch.dtype, device: str | torch.device) -> torch.dtype:
    """The autocast dtype `name` ("bfloat16" / "float16" or their short forms) checked for `device`.
    ValueError naming the device and the dtype when the name is unknown, the device type has no
    autocast, or the GPU lacks native bfloat16 (compute capability < 8.0: use float16 there)."""
    device = _device(device)
    dtype = parse_amp_dtype(name, device)
    if not torch.amp.is_autocast_available(device.type):
        raise ValueError(f"amp_dtype {name!r}: device {device} has no autocast; set amp to false")
    native = device.type != "cuda" or not torch.cuda.is_available() or dtype != torch.bfloat16
    if not (native or torch.cuda.is_bf16_supported(including_emulation=False)):
        raise ValueError(
            f"amp_dtype 'bfloat16' is not supported natively by {_describe(device)}: set amp_dtype to float16"
        )
    return dtype


def autocast(device: str | torch.device, amp: bool | str = True, dtype: str | torch.dtype = "bfloat16"):
    """`torch.autocast` on `device`'s type with the checked `dtype` when `amp` is on, else a no-op context."""
    device = _device(device)
    if not as_bool(amp, "amp"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=amp_dtype(dtype, device))


def needs_grad_scaler(device: str | torch.device, amp: bool | str, dtype: str | torch.dtype = "bfloat16") -> bool:
    """Whether training needs a GradScaler: float16 autocast on CUDA (MONAI's trainer `amp` switch adds one
    around the same float16 autocast). bfloat16, CPU and `amp` off need none. Checks the dtype as
    `amp_dtype` does."""
    device = _device(device)
    if not as_bool(amp, "amp"):
        parse_amp_dtype(dtype)
        return False
    return amp_dtype(dtype, device) == torch.float16 and device.type == "cuda"


def to_float32(output: Any) -> Any:
    """`output` with every bfloat16 / float16 tensor (in dicts, lists and tuples too) cast to float32, so
    losses, metrics, thresholds and writers after the autocast region see the usual dtype."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.dtype in (torch.bfloat16, torch.float16) else output
    if isinstance(output, Mapping):
        return type(output)({k: to_float32(v) for k, v in output.items()})  # type: ignore[call-arg]
    if isinstance(output, (list, tuple)) and not hasattr(output, "_fields"):
        return type(output)(to_float32(v) for v in output)
    return output


def compile_unavailable(device: str | torch.device) -> str | None:
    """Why `torch.compile` (inductor) cannot run on `device` here, or None when it can: CPU needs a C++
    compiler, CUDA needs Triton."""
    device = _device(device)
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton is not installed (inductor needs it for CUDA)"
    if device.type == "cpu":
        from torch._inductor import config as inductor_config

        cxx = inductor_config.cpp.cxx[-1] if isinstance(inductor_config.cpp.cxx, tuple) else inductor_config.cpp.cxx
        names = [cxx] if cxx else ["g++", "c++", "clang++"]
        return None if any(shutil.which(n) for n in names) else "no C++ compiler on PATH (inductor needs one on CPU)"
    return f"inductor does not compile for device type {device.type!r}"


def _inductor(graph, example_inputs):
    from torch._inductor.compile_fx import compile_fx

    return compile_fx(graph, example_inputs)


def _inductor_or_eager(graph, example_inputs):
    """A `torch.compile` backend: inductor, or the graph run eagerly (one logged warning) when inductor fails."""
    try:
        return _inductor(graph, example_inputs)
    except Exception as exc:  # noqa: BLE001 - any compiler failure falls back to eager, logged
        logger.warning("torch.compile failed (%s: %s); this graph runs eagerly", type(exc).__name__, exc)
        return graph.forward


def compile_targets(network: torch.nn.Module) -> list[torch.nn.Module]:
    """What `compile` compiles: the image encoder where the model has one (the inferers call the model's
    parts, not its `forward`; the encoder is most of the work, and sam2 compiles it too), else the model."""
    model = unwrap_model(network)
    encoder = getattr(model, "image_encoder", None)
    return [encoder] if isinstance(encoder, torch.nn.Module) else [model]


def prepare_network(
    network, device: str | torch.device, channels_last: bool | str = False, compile: bool | str = False
):
    """`network` itself, changed in place (state-dict keys stay the official ones): its 4D weights in
    channels-last layout (`channels_last`), its image encoder (or itself) compiled with `torch.compile`
    (`compile`). A compile that cannot run here is skipped with one logged warning and the network
    runs eagerly. Non-modules (e.g. a serving wrapper) are returned unchanged when both switches are off."""
    channels_last, compile = as_bool(channels_last, "channels_last"), as_bool(compile, "compile")
    if not (channels_last or compile):
        return network
    if not isinstance(network, torch.nn.Module):
        raise TypeError(f"channels_last / compile need a torch.nn.Module, got {type(network).__name__}")
    if channels_last:
        network.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # nn.Module.to takes it
    if compile:
        reason = compile_unavailable(device)
        if reason is not None:
            logger.warning("compile: %s on %s; the network runs eagerly", reason, _device(device))
            return network
        for module in compile_targets(network):
            if getattr(module, "_compiled_call_impl", None) is None:
                try:
                    module.compile(backend=_inductor_or_eager)
                except Exception as exc:  # noqa: BLE001 - e.g. a Python version dynamo does not support
                    logger.warning("compile: %s: %s; the network runs eagerly", type(exc).__name__, exc)
    return network
