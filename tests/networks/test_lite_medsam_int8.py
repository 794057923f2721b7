"""int8 encoder of LiteMedSAM (`quantize`, `ExportedEncoder(precision="int8")`) and `runtime_precision: auto`:
the gate records decide auto, the fallback without NNCF (one logged line, f32), the quantised tiny encoder
cached like f32, and int8 masks against f32 on real shared images (skipped without the data)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from conftest import SHARED

from monaiseg.networks import encoder_runtime as er
from monaiseg.networks import quantize
from tests.networks.test_lite_medsam_runtime import tiny_encoder

DATA = SHARED / "data"


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(er.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def hide_nncf(monkeypatch):
    real = er.importlib.util.find_spec
    monkeypatch.setattr(er.importlib.util, "find_spec", lambda name: None if name == "nncf" else real(name))


def test_auto_precision_follows_the_gate_records(cache_dir, monkeypatch, caplog):
    weights = "ab" * 32
    assert er.auto_precision(weights) == "f32"  # no record
    er.record_gate(weights, "f32", True, 0.9)
    er.record_gate(weights, "bf16", True, 0.6)
    er.record_gate(weights, "int8", False, 0.4, dice={"ct": [0.96, 0.9]})
    assert er.gate_path(weights) == cache_dir / "gates" / f"{weights}.json"
    assert er.read_gates(weights)["int8"] == {"passed": False, "seconds": 0.4, "dice": {"ct": [0.96, 0.9]}}
    assert er.auto_precision(weights) == "bf16"  # int8 is faster but failed the gate
    er.record_gate(weights, "int8", True, 0.4)
    assert er.auto_precision(weights) == "int8"
    hide_nncf(monkeypatch)
    with caplog.at_level(logging.WARNING, logger=er.__name__):
        assert er.auto_precision(weights) == "bf16"
    assert caplog.text.count("int8 passed the gate but nncf is not installed; using bf16") == 1
    er.gate_path(weights).write_text("{not json")
    assert er.auto_precision(weights) == "f32"


def test_int8_without_nncf_runs_f32_with_one_line(cache_dir, monkeypatch, caplog):
    hide_nncf(monkeypatch)
    encoder, x = tiny_encoder(), torch.rand(1, 3, 64, 64)
    with caplog.at_level(logging.WARNING, logger=er.__name__):
        exported = er.ExportedEncoder(encoder, (1, 3, 64, 64), "openvino", "int8")
    assert exported.precision == "f32" and (exported.folder / "model.xml").is_file()
    assert caplog.text.count("int8 needs nncf (not installed) to quantise: running OpenVINO f32") == 1
    with torch.no_grad():
        torch.testing.assert_close(exported(x), encoder(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_int8_tiny_encoder_is_quantised_and_cached(cache_dir, monkeypatch):
    exports = []
    real_export = er.export_onnx
    monkeypatch.setattr(er, "export_onnx", lambda *a: exports.append(1) or real_export(*a))
    few = [quantize.encoder_input(image, 64) for image in quantize.synthetic_images(3, 128)]
    monkeypatch.setattr(quantize, "calibration_inputs", lambda side: few)  # NNCF on 3 inputs, not 17
    encoder, x = tiny_encoder(), torch.from_numpy(few[0])
    first = er.ExportedEncoder(encoder, (1, 3, 64, 64), "openvino", "int8")
    f32 = er.ExportedEncoder(encoder, (1, 3, 64, 64), "openvino", "f32")
    assert first.folder != f32.folder and len(exports) == 1  # int8 is quantised from the f32 entry
    xml = (first.folder / "model.xml").read_text()
    assert "FakeQuantize" in xml and "FakeQuantize" not in (f32.folder / "model.xml").read_text()
    again = er.ExportedEncoder(encoder, (1, 3, 64, 64), "openvino", "int8")
    assert again.folder == first.folder and len(exports) == 1 and again.loaded_from_cache
    with torch.no_grad():
        got, expected = again(x), encoder(x)
    assert torch.corrcoef(torch.stack([got.flatten(), expected.flatten()]))[0, 1] > 0.98


def test_calibration_inputs_are_synthetic_and_sample_images(monkeypatch, tmp_path):
    monkeypatch.setenv(quantize.SAMPLE_ENV, str(tmp_path / "absent"))
    inputs = quantize.calibration_inputs(32)
    assert len(inputs) == quantize.SYNTHETIC and all(a.shape == (1, 3, 32, 32) for a in inputs)
    assert all(0 <= a.min() < a.max() <= 1 for a in inputs)  # min-max [0, 1], then resized
    assert np.array_equal(inputs[0], quantize.calibration_inputs(32)[0])  # a fixed seed: a stable cache key
    if DATA.is_dir():
        monkeypatch.setenv(quantize.SAMPLE_ENV, str(DATA))
        assert len(quantize.calibration_inputs(32)) == quantize.SYNTHETIC + 3 * quantize.PER_SET - 1  # 2 CT crops


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "endotect_polyp").is_dir(), reason=f"shared data not under {DATA}")
def test_int8_masks_against_f32_on_real_images(cache_dir, monkeypatch):
    """The real encoder, quantised on an empty cache from its f32 entry (one export for both) with the
    package's code path on 3 of its calibration inputs (a CT slice, a polyp frame, a blood-cell image: NNCF's
    time grows with each input) and no bias correction (5 s more), cached and read back; its masks against f32
    on polyp and blood-cell images that are not among the calibration inputs."""
    import runpy

    from conftest import REPO

    from monaiseg.networks import build_lite_medsam

    monkeypatch.setenv(quantize.SAMPLE_ENV, str(DATA))
    full = quantize.calibration_inputs(256)
    first_ct, first_polyp, first_wbc = (quantize.SYNTHETIC + n for n in (0, 2, 2 + quantize.PER_SET))
    few = [full[first_ct], full[first_polyp], full[first_wbc]]
    monkeypatch.setattr(quantize, "calibration_inputs", lambda side: few)
    monkeypatch.setattr(quantize, "BIAS_CORRECTION", False)
    exports = []
    real_export = er.export_onnx
    monkeypatch.setattr(er, "export_onnx", lambda *a: exports.append(1) or real_export(*a))
    bench = runpy.run_path(str(REPO / "scripts" / "bench_lite_medsam_runtime.py"))
    sides = {p: build_lite_medsam(runtime="openvino", precision=p, decoder_runtime="eager") for p in ("f32", "int8")}
    f32, int8 = (bench["Side"](p, model) for p, model in sides.items())
    dice = []
    for image, labels in (
        bench["read_set"](DATA, "endotect_polyp", 5)[3:] + bench["read_set"](DATA, "wbc_cellavision", 5)[3:]
    ):
        x, boxes = bench["prepare"](image, labels)
        expected, got = f32.run(x, boxes, labels.shape), int8.run(x, boxes, labels.shape)
        dice += [float(2 * (g & e).sum() / (g.sum() + e.sum())) for g, e in zip(got, expected)]
    built = int8.model.image_encoder._exported
    assert (
        built.precision == "int8" and len(exports) == 1 and "FakeQuantize" in (built.folder / "model.xml").read_text()
    )
    assert len(dice) >= 4 and np.mean(dice) >= 0.98 and min(dice) >= 0.95, dice
    again = er.ExportedEncoder(int8.model.image_encoder, (1, 3, 256, 256), "openvino", "int8")
    assert again.folder == built.folder and again.loaded_from_cache and len(exports) == 1
    x = torch.from_numpy(few[0])
    torch.testing.assert_close(again(x), built(x))
