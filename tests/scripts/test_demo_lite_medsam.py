"""scripts/demo_lite_medsam.py: the fine-tuned model is the demo's result only when no organ fell by more than
MAX_ORGAN_DROP (the measured 4-iteration fine-tune lowered the kidneys: right 0.972 -> 0.926, left 0.859 -> 0.816)."""

from __future__ import annotations

import runpy

from conftest import REPO


def test_organs_that_fell_by_more_than_the_limit_are_named():
    demo = runpy.run_path(str(REPO / "scripts" / "demo_lite_medsam.py"))
    lowered = demo["organs_lowered"]
    assert demo["MAX_ORGAN_DROP"] == 0.02
    before = {"liver": 0.85, "right kidney": 0.972, "left kidney": 0.859, "spleen": 0.98}
    after = {"liver": 0.90, "right kidney": 0.926, "left kidney": 0.816, "spleen": 0.965}
    assert lowered(before, after) == {"right kidney": (0.972, 0.926), "left kidney": (0.859, 0.816)}
    assert lowered(before, {**before, "spleen": 0.961}) == {}  # 0.019: within the limit
    assert lowered(before, before) == {}
