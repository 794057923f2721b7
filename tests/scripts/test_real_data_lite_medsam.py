"""scripts/real_data_lite_medsam.py: the datasets it builds from the real samples (the bundle runs themselves are
tests/bundles/test_lite_medsam_finetune.py's and the script's job). A few seconds; skipped without the data."""

from __future__ import annotations

import json
import runpy

import cv2
import numpy as np
import pytest
from conftest import REPO, SHARED

SCRIPT = runpy.run_path(str(REPO / "scripts" / "real_data_lite_medsam.py"))
POLYPS = SHARED / "data" / "endotect_polyp"


@pytest.mark.skipif(not POLYPS.is_dir(), reason=f"shared sample data absent ({POLYPS})")
def test_polyps_sorted_14_training_6_held_out_with_0_1_label_maps(tmp_path):
    datalist = SCRIPT["prepare_polyps"](POLYPS, tmp_path)
    content = json.loads(datalist.read_text())
    names = sorted(p.name for p in (POLYPS / "images").glob("*.jpg"))
    assert [i["image"] for i in content["training"]] == [f"images/{n}" for n in names[:14]]
    assert content["validation"] == content["testing"] and [i["image"] for i in content["testing"]] == [
        f"images/{n}" for n in names[14:]
    ]
    item = content["testing"][0]
    label = cv2.imread(str(datalist.parent / item["label"]), cv2.IMREAD_UNCHANGED)
    truth = cv2.imread(str(POLYPS / "masks" / item["label"].split("/")[-1]), cv2.IMREAD_GRAYSCALE) > 127
    assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1} and np.array_equal(label == 1, truth)
    assert (datalist.parent / item["image"]).read_bytes() == (POLYPS / item["image"]).read_bytes()


def test_unknown_set_is_refused_before_anything_runs(tmp_path, capsys):
    with pytest.raises(SystemExit):
        SCRIPT["main"](["--data", str(tmp_path), "--sets", "wbc_nucleus,kidneys"])
    assert "unknown set(s) ['kidneys']" in capsys.readouterr().err
