"""scripts/gpu_check.sh --dry-run (CPU, tiny sizes): the GPU check runs end to end and writes a complete
report, so the script cannot rot between the runs on a lent GPU."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import REPO


@pytest.mark.slow
def test_gpu_check_dry_run_writes_every_section(tmp_path):
    out = tmp_path / "gpu_report.json"
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["env"]["device"] == "cpu"
    modes = report["lite_medsam"]["modes"]
    assert set(modes) == {"float32", "bf16_autocast", "bf16_channels_last"}
    for mode in modes:
        assert modes[mode]["images_per_s"] > 0, modes[mode]
        assert modes[mode]["dice_to_float32"] >= 0.9, modes[mode]
    assert modes["float32"]["dice_to_float32"] == 1.0
    assert set(report["bundles"]) == {"unet_cells", "sam_medcls"}
    for name, row in report["bundles"].items():
        assert "error" not in row, (name, row.get("traceback"))
        assert row["predictions_same_shape"] is True and row["prediction_agreement"] > 0.9, (name, row)
        assert row["float32"]["train_iteration_s"] > 0 and row["amp_bf16"]["train_iteration_s"] > 0
        assert row["amp_bf16"]["grad_scaler"] is False  # bf16: no GradScaler
    for name in ("propagation", "peft", "embedding_cache"):
        assert report[name]["options_checked"] is True, report[name]
    label = report["label_3d"]  # our 3D label task against MONAI Label's Sam2InferTask, really run on CPU
    assert "error" not in label, label.get("traceback")
    assert label["sam2"] == "sam2.1 tiny at 32" and label["weights"].startswith("random init")
    for task in ("ours", "monai_label"):
        row = label[task]
        assert "error" not in row, row.get("traceback")
        assert row["label_shape"] == label["volume"] == [32, 32, 4], (task, row)
        assert row["first_request_s"] > 0 and row["next_request_s"] > 0 and row["first_peak_mib"] is None
        assert 0 <= row["dice_to_truth"] <= 1 and 0 <= row["dice_to_truth_from_prompt_slice"] <= 1
    assert label["ours"]["next_equals_first"] is True
    assert label["same_shape"] is True and 0 <= label["dice_ours_vs_monai_label"] <= 1
    # the same weights and input: where both propagate (forward from the prompted slice) the labels agree
    assert label["dice_ours_vs_monai_label_from_prompt_slice"] > 0.8, label
    ratio = label["ratio_ours_to_theirs"]
    assert set(ratio) == {"first_request_s", "next_request_s"} and min(ratio.values()) > 0, ratio
