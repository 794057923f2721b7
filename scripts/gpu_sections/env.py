"""Section `env`: Python, torch, MONAI, the device; on CUDA the GPU, its memory, compute capability and bf16."""

from __future__ import annotations

import contextlib
import platform

import torch


def env_section(device: torch.device) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
    }
    with contextlib.suppress(ImportError):
        import monai

        info["monai"] = monai.__version__
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            bf16_native=torch.cuda.is_bf16_supported(including_emulation=False),
        )
    return info
