"""scripts/compare_lite_medsam.py: the lite_medsam bundle with the official weights segments real images as
well as measured, and as the official LiteMedSAM 2D procedure does.

One in-process bundle run over a synthetic image (two bright ellipses on noise, one box each: no shared
data needed) and, when the real sample data is there, the first 5 images (sorted) of each set; the
independent reference of the official procedure on the synthetic image and the first image of each set
(the full sets are the script's job: bundles/lite_medsam/docs/README.md#parity-with-the-official-pipeline).
About 20 encoder calls (OpenVINO runtime), ~25 s on two idle cores; without the data ~15 s."""

from __future__ import annotations

import runpy

import numpy as np
import pytest
from conftest import REPO, SHARED

SCRIPT = runpy.run_path(str(REPO / "scripts" / "compare_lite_medsam.py"))
DATA = SHARED / "data"
SUBSET = 5  # images per set run through the bundle
REFERENCE_SUBSET = 1  # of those, images per set the reference segments too
MIN_DICE = {  # zero-shot mean Dice of the bundle on the subset, measured (5 objects each) - 0.01
    "deeplesion_ct": 0.894,  # 0.9042
    "endotect_polyp": 0.966,  # 0.9758
    "wbc_cellavision": 0.960,  # 0.9704
}


def ellipses_case():
    """A grey 180 x 260 image of noise with two bright ellipses off the diagonal, one box each: a box with
    x and y swapped lands on noise."""
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:180, :260]
    inside = np.zeros((180, 260), dtype=np.int32)
    inside[((rows - 55) / 30) ** 2 + ((cols - 180) / 55) ** 2 <= 1] = 1
    inside[((rows - 125) / 35) ** 2 + ((cols - 60) / 25) ** 2 <= 1] = 2
    image = np.clip(rng.normal(60, 15, inside.shape) + 150 * (inside > 0), 0, 255).astype(np.uint8)
    case = SCRIPT["make_case"]("synthetic", "ellipses", image, inside > 0)
    assert np.array_equal(case.components > 0, inside > 0) and len(case.boxes) == 2
    return case


def test_each_component_is_one_object_with_its_box():
    mask = np.zeros((40, 50), dtype=bool)
    mask[5:10, 30:45] = True
    mask[20:31, 2:9] = True
    mask[35, 20:25] = True  # one pixel high: no box area, left out
    components, boxes, dropped = SCRIPT["mask_components"](mask)
    assert boxes == [(30, 5, 44, 9), (2, 20, 8, 30)] and dropped == 1
    assert (components == 1).sum() == 75 and (components == 2).sum() == 77 and components[35, 22] == 0


def test_summary_pairs_only_the_objects_the_reference_segmented():
    rows = [
        {"set": "a", "image": "1", "label": 1, "ours": 0.9, "reference": 0.8, "agreement": 0.95},
        {"set": "a", "image": "2", "label": 1, "ours": 0.5, "reference": None, "agreement": None},
        {"set": "b", "image": "1", "label": 1, "ours": 0.7, "reference": None, "agreement": None},
    ]
    table = SCRIPT["summarize"](rows)
    assert table["a"]["ours"] == pytest.approx(0.7) and table["a"]["paired"] == 1
    assert table["a"]["difference"] == pytest.approx(0.1) and table["a"]["agreement"] == 0.95
    assert table["b"]["reference"] is None and table["b"]["difference"] is None
    assert "| b | 1 | 1 | 0.7000 | - | - | - |" in SCRIPT["format_table"](table)


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    cases = [ellipses_case()]
    if DATA.is_dir():
        cases += SCRIPT["load_cases"](DATA, SCRIPT["SETS"], SUBSET)
    workdir = tmp_path_factory.mktemp("compare_lite_medsam")
    return SCRIPT["compare"](cases, workdir, reference_limit=REFERENCE_SUBSET, in_process=True)


@pytest.mark.slow
def test_synthetic_ellipses_are_segmented_alike(rows):
    ellipses = [r for r in rows if r["set"] == "synthetic"]
    assert [r["label"] for r in ellipses] == [1, 2]
    for r in ellipses:
        assert r["ours"] >= 0.9 and r["reference"] >= 0.9, r
        assert abs(r["ours"] - r["reference"]) <= 0.005 and r["agreement"] >= 0.99, r


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason=f"real sample data not found at {DATA}")
@pytest.mark.parametrize("name", SCRIPT["SETS"])
def test_real_set_zero_shot_dice_and_parity(rows, name):
    summary = SCRIPT["summarize"](rows)[name]
    assert summary["images"] == SUBSET
    assert summary["ours"] >= MIN_DICE[name], summary
    assert summary["paired"] >= REFERENCE_SUBSET and summary["agreement"] >= 0.99, summary
    assert abs(summary["difference"]) <= 0.005, summary
