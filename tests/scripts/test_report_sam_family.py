"""scripts/report_sam_family.py: one table row per bundle with counts that match the network."""

from __future__ import annotations

import runpy

import pytest
from conftest import REPO

SCRIPT = runpy.run_path(str(REPO / "scripts" / "report_sam_family.py"))


@pytest.mark.slow
def test_table_rows_match_the_tiny_networks(capsys):
    SCRIPT["main"](["--tiny", "--repeats", "1"])
    rows = [
        line.split("|")[1:-1]
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("| sam") or line.startswith("| medsam")
    ]
    assert [r[0].strip() for r in rows] == ["medsam", "sam_med2d", "sam_automed", "sam_medcls"]
    for bundle, size, total, trainable, percent, seconds in rows:
        network, image_size = SCRIPT["build"](bundle.strip(), tiny=True)
        assert int(size) == image_size
        assert int(total.replace(",", "")) == sum(p.numel() for p in network.parameters())
        assert int(trainable.replace(",", "")) == sum(p.numel() for p in network.parameters() if p.requires_grad)
        assert 0 < float(percent) <= 100 and float(seconds) > 0
