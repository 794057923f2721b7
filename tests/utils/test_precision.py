"""monaiseg.utils.precision and the autocast inferer: dtype checks, autocast on the engine's device,
float32 outputs, the GradScaler rule, channels-last and the compile fall-back to eager."""

from __future__ import annotations

import logging

import pytest
import torch
from torch import nn

from monaiseg.inferers import AutocastInferer, with_amp
from monaiseg.utils import precision


@pytest.mark.parametrize(
    ("name", "dtype"), [("bfloat16", torch.bfloat16), ("BF16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_amp_dtype_names(name, dtype):
    assert precision.amp_dtype(name, "cpu") == dtype


@pytest.mark.parametrize(
    ("name", "device", "pattern"),
    [
        ("float32", "cpu", r"amp_dtype must be one of .*'float32'"),
        ("int8", "cpu", r"'int8'"),
        ("bfloat16", "meta", r"device meta has no autocast"),
    ],
)
def test_bad_amp_dtype_names_the_device_and_dtype(name, device, pattern):
    with pytest.raises(ValueError, match=pattern):
        precision.amp_dtype(name, device)


def test_bf16_refused_on_a_gpu_without_native_bf16(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Tesla V100")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: (7, 0))
    with pytest.raises(
        ValueError, match=r"not supported natively by cuda \(Tesla V100, compute capability 7.0\).*float16"
    ):
        precision.amp_dtype("bfloat16", "cuda")
    assert precision.amp_dtype("float16", "cuda") == torch.float16


def test_grad_scaler_only_for_float16_on_cuda():
    assert precision.needs_grad_scaler("cuda", True, "float16")
    assert not precision.needs_grad_scaler("cuda", False, "float16")
    assert not precision.needs_grad_scaler("cpu", "true", "float16")
    with pytest.raises(ValueError, match="amp_dtype"):
        precision.needs_grad_scaler("cpu", False, "float64")


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(4, 4)

    def forward(self, x):
        return self.linear(x).relu()


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.image_encoder = Encoder()

    def forward(self, x):
        y = self.conv(x).mean((2, 3))
        return {"logits": self.image_encoder(y), "index": y.argmax(1), "list": [y]}


def test_autocast_inferer_runs_on_the_device_type_and_returns_float32():
    seen = []

    def inferer(inputs, network):
        seen.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        out = network(inputs)
        seen.append(out["logits"].dtype)
        return out

    net, x = Net(), torch.rand(2, 3, 8, 8)
    wrapped = with_amp(inferer, "cpu", True, "bf16")
    assert isinstance(wrapped, AutocastInferer)
    out = wrapped(x, net)
    assert seen == [torch.bfloat16, torch.bfloat16]
    assert out["logits"].dtype == torch.float32 and out["list"][0].dtype == torch.float32
    assert out["index"].dtype == torch.int64
    torch.testing.assert_close(out["logits"], net(x)["logits"], atol=0.05, rtol=0.05)
    assert with_amp(inferer, "cpu", "false") is inferer
    with pytest.raises(ValueError, match=r"amp_dtype .*\(autocast on cpu\), got 'float64'"):
        with_amp(inferer, "cpu", False, "float64")  # checked with amp off too


def test_channels_last_in_place_keeps_weights_and_state_dict_keys():
    net = Net()
    x = torch.rand(1, 3, 8, 8)
    keys, before = list(net.state_dict()), net(x)["logits"]
    assert precision.prepare_network(net, "cpu", channels_last="true") is net
    assert net.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert list(net.state_dict()) == keys
    torch.testing.assert_close(net(x)["logits"], before)
    assert precision.prepare_network("not a module", "cpu") == "not a module"


def test_compile_falls_back_to_eager_with_one_logged_warning(monkeypatch, caplog):
    """A compiler that fails (here: inductor raising) leaves the network running eagerly with the same
    outputs; the image encoder is what gets compiled, the state-dict keys stay."""
    torch._dynamo.reset()

    def broken(graph, example_inputs):
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(precision, "_inductor", broken)
    net, x = Net(), torch.rand(3, 4)
    expected, keys = net.image_encoder(x), list(net.state_dict())
    with caplog.at_level(logging.WARNING, logger="monaiseg.utils.precision"):
        precision.prepare_network(net, "cpu", compile=True)
        out = net.image_encoder(x)
    torch.testing.assert_close(out, expected)
    assert net.image_encoder._compiled_call_impl is not None and net.conv._compiled_call_impl is None
    assert list(net.state_dict()) == keys
    assert caplog.text.count("torch.compile failed (RuntimeError: no C++ compiler found)") == 1
    torch._dynamo.reset()


def test_compile_skipped_with_a_warning_where_it_cannot_run(monkeypatch, caplog):
    monkeypatch.setattr(precision, "compile_unavailable", lambda device: "no C++ compiler on PATH")
    net = Net()
    with caplog.at_level(logging.WARNING, logger="monaiseg.utils.precision"):
        precision.prepare_network(net, "cpu", compile=True)
    assert net.image_encoder._compiled_call_impl is None
    assert "no C++ compiler on PATH on cpu; the network runs eagerly" in caplog.text
