"""Autocast around any inferer: how the bundles' trainers and evaluators run under `amp`."""

from __future__ import annotations

import torch
from monai.inferers import Inferer

from monaiseg.utils.config import as_bool
from monaiseg.utils.precision import amp_dtype, autocast, parse_amp_dtype, to_float32


class AutocastInferer(Inferer):
    """`inferer` run under `torch.autocast(device.type, dtype)`; half-precision outputs come back as
    float32 (losses, metrics and writers see the usual dtype). Other attributes are the wrapped
    inferer's."""

    def __init__(self, inferer, device: str | torch.device, dtype: str | torch.dtype = "bfloat16"):
        self.inferer = inferer
        self.device = torch.device(device)
        self.dtype = amp_dtype(dtype, self.device)

    def __call__(self, inputs, network, *args, **kwargs):
        with autocast(self.device, True, self.dtype):
            output = self.inferer(inputs, network, *args, **kwargs)
        return to_float32(output)

    def __getattr__(self, name: str):
        if name == "inferer":  # not set yet (copy / unpickling)
            raise AttributeError(name)
        return getattr(self.inferer, name)


def with_amp(inferer, device: str | torch.device, amp: bool | str, dtype: str | torch.dtype = "bfloat16"):
    """`inferer` under autocast when `amp` is on (an `AutocastInferer`), else `inferer` itself; the dtype
    is checked either way (ValueError naming the device and dtype)."""
    if not as_bool(amp, "amp"):
        parse_amp_dtype(dtype, device)
        return inferer
    return AutocastInferer(inferer, device, dtype)
