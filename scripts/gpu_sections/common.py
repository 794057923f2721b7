"""What the sections of the GPU check share: the repository root, a clock and the report's Dice."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from monaiseg.metrics import binary_dice

REPO = Path(__file__).resolve().parents[2]


class Clock:
    """Wall seconds with CUDA synchronised, and peak GPU memory (MiB) of a block."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.peak_mib = device, 0.0, None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        self.seconds = time.perf_counter() - self.start


def now(device: torch.device) -> float:
    """`time.perf_counter()` after the device's queued work is done."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def dice(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """`monaiseg.metrics.binary_dice` (foreground > 0; two empty masks 1.0) rounded to 5 decimals for the report."""
    return round(binary_dice(a, b), 5)
