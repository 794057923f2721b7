"""scripts/bench_lite_medsam.py --quick (1 image, a 2-slice volume with 2 objects, one run: about 10 encoder
calls of the real network, ~45 s on 2 cores): both sides segment the same image and volume alike, encode
what they should, and the table reports their times, ratios and memory."""

from __future__ import annotations

import json
import math
import runpy

import pytest
from conftest import REPO

SCRIPT = runpy.run_path(str(REPO / "scripts" / "bench_lite_medsam.py"))


@pytest.mark.slow
def test_bench_compares_like_with_like(capsys, tmp_path):
    report = SCRIPT["main"](["--quick", "--device", "cpu", "--json", str(tmp_path / "bench.json")])
    assert json.loads((tmp_path / "bench.json").read_text())["volume"] == report["volume"]
    flat, volume = report["2d"], report["volume"]
    assert flat["dice_ours_official"] >= 0.99 and volume["dice_ours_official"] >= 0.99
    assert flat["ours_encoder_calls"] == flat["official_encoder_calls"] == 1
    # every slice encoded once for both objects by ours; once per object by the official loop
    assert volume["ours_encoder_calls"] * volume["ours_slices_per_call"] == 2
    assert volume["official_encoder_calls"] == 4 and volume["official_slices_per_call"] == 1
    assert flat["ratio_ours_over_official"] == pytest.approx(flat["ours_s"] / flat["official_s"])
    assert volume["speedup_official_over_ours"] == pytest.approx(volume["official_s"] / volume["ours_s"])
    assert all(
        math.isfinite(r[k]) and r[k] >= 0 for r in (flat, volume) for k in ("ours_peak_mib", "official_peak_mib")
    )
    assert report["encoder"]["single_s"] > 0 and report["encoder"]["batched_s"] > 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| 2D", "| volume"))]
    assert len(rows) == 2 and "goal <= 1.0" in rows[0] and "goal >= 1.5" in rows[1]
