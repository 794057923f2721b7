"""Encoder runtimes of LiteMedSAM (`encoder_runtime`, `TinyViT.set_runtime`, `build_lite_medsam(runtime=...)`):
names and devices refused before any data, each runtime built on a tiny TinyViT and equal to eager, the
export kept fresh (weights loaded, training), a failed export logged and run eager, the bundle's switch,
the on-disk model cache (reused by a second build, a corrupt entry rebuilt).
Masks of the real weights on the shared data: tests/scripts/test_bench_lite_medsam_runtime.py."""

from __future__ import annotations

import copy
import logging
import pickle
from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from conftest import REPO
from monai.bundle import ConfigParser

from monaiseg.networks import RuntimeUnavailableError, TinyViT, build_lite_medsam, resolve_runtime
from monaiseg.networks import encoder_runtime as er
from monaiseg.networks import tiny_vit as tv

TINY = {"img_size": 64, "embed_dims": (16, 32, 32, 64), "depths": (1, 1, 1, 1), "num_heads": (1, 2, 2, 2)}
EXPORTED = [r for r in er.RUNTIMES if r != "eager"]


def tiny_encoder(seed: int = 0) -> TinyViT:
    torch.manual_seed(seed)
    encoder = TinyViT(**TINY, out_chans=32).eval()
    for module in encoder.modules():  # BN statistics away from identity, so that folding them matters
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    return encoder


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every export of these tests goes to a fresh cache folder."""
    monkeypatch.setenv(er.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


@torch.no_grad()
def infer(encoder: TinyViT, x: torch.Tensor) -> torch.Tensor:
    return encoder(x)


def test_names_precisions_and_devices_are_checked(monkeypatch):
    assert resolve_runtime("EAGER") == "eager" and resolve_runtime(" openvino ") == "openvino"
    assert resolve_runtime("auto", "cpu") == "openvino" and resolve_runtime("auto", "cuda") == "eager"
    with pytest.raises(ValueError, match=r"'onnx' is unknown: choose one of 'auto', 'eager', 'openvino'"):
        resolve_runtime("onnx")
    with pytest.raises(ValueError, match="'onnxruntime' has no precision 'bf16'"):
        resolve_runtime("onnxruntime", precision="bf16")
    with pytest.raises(RuntimeUnavailableError, match="'openvino' runs on CPU only, the device is cuda:0"):
        resolve_runtime("openvino", "cuda:0")
    monkeypatch.setattr(er.importlib.util, "find_spec", lambda name: None)  # nothing installed
    with pytest.raises(RuntimeUnavailableError, match="needs the packages onnxruntime and onnx, not installed"):
        resolve_runtime("onnxruntime")
    assert resolve_runtime("auto", "cpu") == "eager"  # auto never fails


@pytest.mark.parametrize("runtime", EXPORTED)
def test_each_runtime_equals_eager_and_stays_fresh(runtime):
    encoder, x = tiny_encoder(), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        expected = encoder(x)
        encoder.set_runtime(runtime)
        assert encoder._exported is None  # exported at the first inference call
        got = encoder(x)
        assert isinstance(encoder._exported, er.ExportedEncoder) and encoder._exported.runtime == runtime
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        with ThreadPoolExecutor(4) as pool:  # concurrent callers (MONAI Label requests) share the export
            assert all(torch.equal(y, got) for y in pool.map(infer, [encoder] * 8, [x] * 8))
        encoder.load_state_dict(tiny_encoder(seed=1).state_dict())  # new weights: exported again
        assert encoder._exported is None
        torch.testing.assert_close(encoder(x), tiny_encoder(seed=1)(x), rtol=1e-4, atol=1e-4)
        encoder.train()
        assert encoder._exported is None and encoder.training
    encoder.eval()
    assert encoder(x).requires_grad  # autograd: the eager module, never the export
    clone = pickle.loads(pickle.dumps(copy.deepcopy(encoder)))
    assert clone.runtime == runtime and clone._exported is None


def test_failed_export_is_logged_and_runs_eager(monkeypatch, caplog):
    def fail(*args, **kwargs):
        raise RuntimeError("no CPU plugin")

    encoder, x = tiny_encoder(), torch.rand(1, 3, 64, 64)
    monkeypatch.setattr(tv, "ExportedEncoder", fail)
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger="monaiseg.networks.exported_module"):
        expected = encoder(x)
        got = encoder.set_runtime("openvino")(x)
    assert "TinyViT: openvino runtime failed (RuntimeError: no CPU plugin); running eager" in caplog.text
    assert encoder.runtime == "eager" and torch.equal(got, expected)


def test_bundle_switch_builds_the_runtime():
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "lite_medsam" / "configs" / "inference.json"))
    parser.update({"checkpoint": None, "device": "$torch.device('cpu')"})
    assert parser["runtime"] == "auto" and parser["runtime_precision"] == "auto"
    network = parser.get_parsed_content("network_def", instantiate=True)
    assert network.image_encoder.runtime == "openvino" and not any(
        p.requires_grad for p in network.image_encoder.parameters()
    )
    assert build_lite_medsam(None, runtime="onnxruntime").image_encoder.runtime == "onnxruntime"
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundles" / "lite_medsam" / "configs" / "inference.json"))
    parser.update({"checkpoint": None, "runtime": "tensorrt"})
    with pytest.raises(Exception) as caught:
        parser.get_parsed_content("network_def", instantiate=True)
    assert "encoder runtime 'tensorrt' is unknown" in str(caught.value) + str(caught.value.__cause__)


def test_model_cache_is_reused_and_a_corrupt_entry_rebuilt(cache_dir, monkeypatch, caplog):
    exports = []
    real_export = er.export_onnx
    monkeypatch.setattr(er, "export_onnx", lambda *a: exports.append(1) or real_export(*a))
    encoder, x = tiny_encoder(), torch.rand(1, 3, 64, 64)
    first = er.ExportedEncoder(encoder, (1, 3, 64, 64), "openvino")
    assert first.folder.parent == cache_dir / "encoders" and len(exports) == 1 and not first.loaded_from_cache
    assert {"entry.json", "model.xml", "model.bin", "blobs"} <= {p.name for p in first.folder.iterdir()}
    assert any((first.folder / "blobs").iterdir())  # OpenVINO's compiled blob
    second = er.ExportedEncoder(encoder, (1, 3, 64, 64), "openvino")
    assert second.folder == first.folder and len(exports) == 1 and second.loaded_from_cache
    with torch.no_grad():
        torch.testing.assert_close(second(x), encoder(x), rtol=1e-4, atol=1e-4)
    other = er.ExportedEncoder(tiny_encoder(seed=1), (1, 3, 64, 64), "openvino")  # other weights: other entry
    assert other.folder != first.folder and len(exports) == 2
    with (first.folder / "model.bin").open("r+b") as handle:
        handle.write(b"corrupt")
    with caplog.at_level(logging.WARNING, logger=er.__name__):
        rebuilt = er.ExportedEncoder(encoder, (1, 3, 64, 64), "openvino")
    assert len(exports) == 3 and rebuilt.folder == first.folder
    assert caplog.text.count("is corrupt (model.bin has another checksum): rebuilding it") == 1
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), encoder(x), rtol=1e-4, atol=1e-4)
    assert not [p for p in (cache_dir / "encoders").iterdir() if p.name.startswith(".building-")]


def test_cache_root_and_weights_key(monkeypatch, tmp_path):
    monkeypatch.delenv(er.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert er.cache_root() == tmp_path / ".cache" / "monaiseg"
    encoder = tiny_encoder()
    digest = er.weights_sha256(encoder)
    assert digest == er.weights_sha256(copy.deepcopy(encoder)) and len(digest) == 64
    with torch.no_grad():
        encoder.neck[0].weight[0, 0, 0, 0] += 1e-6
    assert er.weights_sha256(encoder) != digest
    cache = er.ModelCache(tmp_path / "c")
    folder = cache.entry({"a": 1}, lambda f: (f / "x.txt").write_text("hi"))
    assert (folder / "x.txt").read_text() == "hi" and cache.problem(folder, {"a": 1}) is None
    assert cache.problem(folder, {"a": 2}) == "its key differs"
