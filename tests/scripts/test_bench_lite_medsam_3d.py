"""scripts/bench_lite_medsam_3d.py: the synthetic FLARE-like CT (6 organs, their slice ranges scaled with the
depth), the 3D boxes both sides get (key slice in the middle of the range, the box of the truth there) and the
official loop's subset behind an extrapolated time (`--official-slices`)."""

from __future__ import annotations

import runpy

import numpy as np
from conftest import REPO

SCRIPT = runpy.run_path(str(REPO / "scripts" / "bench_lite_medsam_3d.py"))


def test_flare_like_ct_and_its_3d_boxes():
    volume, labels = SCRIPT["flare_like_ct"](10, side=128)
    assert volume.shape == labels.shape == (10, 128, 128) and volume.dtype == labels.dtype == np.uint8
    assert sorted(np.unique(labels)) == list(range(7))
    specs = SCRIPT["specs_from_labels"](labels)
    # liver: slices 20-70 of 100 -> 2..6 of 10; aorta 10-95 -> 1..8; pancreas 45-60 -> 4..5
    assert [s[2] for s in specs] == [(2, 6), (3, 5), (4, 6), (4, 6), (1, 8), (4, 5)]
    assert [s[0] for s in specs] == [4, 4, 5, 5, 5, 5]
    key, (x0, y0, x1, y1), _ = specs[4]  # the aorta: a disc of radius 12 / 512 * 128 = 3 px
    ys, xs = np.nonzero(labels[key] == 5)
    assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max(), ys.max()) and 4 <= x1 - x0 <= 7
    assert volume[labels > 0].mean() > volume[labels == 0].mean() + 30  # organs brighter than the rest
    assert SCRIPT["mean_dice"](labels, labels, 6) == 1.0


def test_official_subset_and_its_extrapolation_counts():
    specs = [(5, (0, 0, 4, 4), (2, 9)), (3, (1, 1, 5, 5), (0, 4)), (7, (2, 2, 6, 6), (7, 7))]
    assert SCRIPT["pairs"](specs) == 8 + 5 + 1
    cut = SCRIPT["official_subset"](specs, 3)  # key slice up, then down where the range ends
    assert [s[2] for s in cut] == [(5, 7), (2, 4), (7, 7)] and [s[:2] for s in cut] == [s[:2] for s in specs]
    assert SCRIPT["pairs"](cut) == 7
    labels = np.zeros((10, 2, 2), dtype=np.uint8)
    labels[:, 0, 0], labels[:, 1, 1] = 1, 2
    kept = SCRIPT["covered"](labels, cut)
    assert np.flatnonzero(kept[:, 0, 0] == 1).tolist() == [5, 6, 7]
    assert np.flatnonzero(kept[:, 1, 1] == 2).tolist() == [2, 3, 4] and kept.sum() == 3 + 2 * 3
