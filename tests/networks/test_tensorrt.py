"""`trt_network` and every bundle's `configs/inference_trt.json`: the config builds its network on CPU (eager, one
logged warning), its submodules exist, and where TensorRT can run, MONAI's `trt_compile` gets them with the plan
path (checked with `trt_compile` replaced, since no machine here has TensorRT)."""

from __future__ import annotations

import logging

import pytest
import torch
from conftest import BUNDLES, REPO
from monai.bundle import ConfigParser
from torch import nn

import monaiseg.networks.tensorrt as tensorrt

TRT_BUNDLES = [b for b in BUNDLES if (b / "configs" / "inference_trt.json").is_file()]
# their networks run the image encoder block by block (hf_sam's AWFFM needs a middle block's output) or return
# dicts of per-level lists and keep a memory bank between frames (SAM2): see the TensorRT section of docs/usage.md
WITHOUT_TRT = {"hf_sam", "medsam2", "bloodcell_sam2"}


@pytest.fixture
def trt_calls(monkeypatch) -> list:
    """TensorRT made "available" and MONAI's `trt_compile` replaced by a recorder of (plan base, args, submodule)."""
    calls = []

    def record(network, base_path, args, submodule):
        calls.append((base_path, args, submodule))
        return network

    monkeypatch.setattr(tensorrt, "tensorrt_missing", lambda: [])
    monkeypatch.setattr(tensorrt, "trt_compile", record)
    return calls


def toy() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), nn.Conv2d(4, 1, 1)))


def test_the_bundles_without_a_tensorrt_config_are_the_documented_ones():
    assert {b.name for b in BUNDLES} - {b.name for b in TRT_BUNDLES} == WITHOUT_TRT
    usage = (REPO / "docs" / "usage.md").read_text()
    assert all(f"`{name}`" in usage.split("## TensorRT")[1].split("\n## ")[0] for name in WITHOUT_TRT)


def test_a_submodule_the_network_lacks_is_refused_before_anything_is_built(tmp_path):
    with pytest.raises(
        ValueError, match=r"trt submodule 'image_encoder' is not in Sequential \(its top-level modules: 0, 1\)"
    ):
        tensorrt.trt_network(toy(), tmp_path / "plans" / "model.pt", ["1.1", "image_encoder"])
    assert not (tmp_path / "plans").exists()


def test_without_tensorrt_the_network_runs_eager_with_one_warning(tmp_path, caplog):
    network = toy()
    forward = network.forward
    with caplog.at_level(logging.WARNING, logger=tensorrt.__name__):
        assert tensorrt.trt_network(network, tmp_path / "model.pt", "1.1") is network
    assert network.forward == forward and not list(tmp_path.iterdir())
    assert "TensorRT not used" in caplog.text and "no " in caplog.text
    if not torch.cuda.is_available():
        assert "CUDA" in tensorrt.tensorrt_missing()


def test_with_tensorrt_trt_compile_gets_the_submodules_and_the_plan_path(tmp_path, trt_calls):
    base = tmp_path / "models" / "model.pt"
    network = toy()
    assert tensorrt.trt_network(network, base, ["1.1"], {"precision": "fp16"}) is network
    assert trt_calls == [(str(base), {"precision": "fp16"}, ["1.1"])] and base.parent.is_dir()
    tensorrt.trt_network(network, base)
    assert trt_calls[-1][2] is None  # the whole network


@pytest.mark.parametrize("bundle", TRT_BUNDLES, ids=[b.name for b in TRT_BUNDLES])
def test_inference_trt_config_builds_the_network_with_existing_submodules(bundle, tmp_path, trt_calls):
    configs = bundle / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / n) for n in ("inference.json", "inference_trt.json", "tiny.json")])
    parser.update({"bundle_root": str(tmp_path), "checkpoint": None, "foundation_checkpoint": None})
    network = parser.get_parsed_content("network")
    ((base, args, submodules),) = trt_calls
    assert base == f"{tmp_path}/models/model.pt" and (tmp_path / "models").is_dir()
    assert args["fallback"] and len(args["dynamic_batchsize"]) == 3 and args["dynamic_batchsize"][0] == 1
    for name in submodules or []:
        assert isinstance(network.get_submodule(name), nn.Module)
    assert "monaiseg.networks.trt_network(" in parser["network"]  # inference_trt.json's network
