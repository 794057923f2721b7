"""scripts/bench_lite_medsam_3d.py: the synthetic FLARE-like CT (6 organs, their slice ranges scaled with the
depth) and the 3D boxes both sides get (key slice in the middle of the range, the box of the truth there)."""

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
