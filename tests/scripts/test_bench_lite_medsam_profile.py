"""scripts/bench_lite_medsam_profile.py's per-layer profile on a tiny TinyViT: OpenVINO's profiled time split
per op type and per kernel gives the same total, and the f32 kernels asked for ran."""

from __future__ import annotations

import runpy

from conftest import REPO

from monaiseg.networks import encoder_runtime as er
from tests.networks.test_lite_medsam_runtime import tiny_encoder

SCRIPT = runpy.run_path(str(REPO / "scripts" / "bench_lite_medsam_profile.py"))


def test_profile_splits_the_time_by_op_type_and_kernel(tmp_path, monkeypatch):
    monkeypatch.setenv(er.CACHE_ENV, str(tmp_path))
    folder = er.ExportedEncoder(tiny_encoder(), (1, 3, 64, 64), "openvino").folder
    seconds, per_type, per_kernel = SCRIPT["profile"](folder, "f32", "LATENCY", 1, 2, side=64)
    assert seconds > 0 and sum(per_type.values()) > 0
    assert abs(sum(per_type.values()) - sum(per_kernel.values())) < 1e-9
    assert {"FullyConnected", "Convolution"} <= per_type.keys() and any(k.endswith("_f32") for k in per_kernel)
