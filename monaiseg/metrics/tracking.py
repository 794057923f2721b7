"""Cell tracking accuracy (TRA) as the Cell Tracking Challenge defines it."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from monaiseg.data.ctc import (
    TRACK_FILE,
    compact_labels,
    label_video,
    split_track_gaps,
    track_table,
    write_ctc_result,
    write_tracks,
)


def tracking_accuracy(
    pred: np.ndarray,
    gt: np.ndarray,
    pred_parents: Mapping[int, int] | None = None,
    gt_parents: Mapping[int, int] | None = None,
) -> float:
    """CTC TRA (Matula et al. 2015, computed by ``ctc_metrics``) of tracked instance masks (T, H, W).

    ``TRA = 1 - min(AOGM, AOGM_0) / AOGM_0`` with AOGM = 5 NS + 10 FN + 1 FP + 1 ED + 1.5 EA + 1 EC and
    AOGM_0 = 10 (GT objects) + 1.5 (GT links). Both are written to temporary CTC folders, track gaps
    split (:func:`split_track_gaps`) and labels renumbered 1..n (``ctc_metrics`` adds the largest GT label
    to the result labels in uint16, which would wrap around). ``*_parents`` map child -> parent label
    (divisions). A prediction without objects scores 0; a GT without objects raises ValueError.
    """
    from ctc_metrics.scripts.evaluate import calculate_metrics, load_data  # lazy: pulls in scikit-learn

    pred, gt = label_video(pred, "pred"), label_video(gt, "gt")
    if pred.shape != gt.shape:
        raise ValueError(f"pred {pred.shape} and gt {gt.shape} differ in shape")
    if not gt.any():
        raise ValueError("gt has no objects: TRA is undefined")
    if not pred.any():
        return 0.0
    gt, gt_parents = compact_labels(*split_track_gaps(gt, gt_parents))
    pred, pred_parents = compact_labels(*split_track_gaps(pred, pred_parents))
    with tempfile.TemporaryDirectory(prefix="ctc-tra-") as tmp:
        gt_dir = Path(tmp) / "01_GT"
        write_tracks(gt_dir / "TRA", "man_track", gt, track_table(gt, gt_parents), TRACK_FILE)
        res_dir = write_ctc_result(Path(tmp) / "01_RES", pred, pred_parents)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Empty frame")  # frames without objects are legal
            comp, ref, traj, segm, _, valid = load_data(str(res_dir), str(gt_dir), True, False, threads=1)
        results = calculate_metrics(comp, ref, traj, segm, ["TRA"], valid)
    if results["TRA"] is None:
        raise RuntimeError("ctc_metrics rejected the written result as invalid")
    return float(results["TRA"])
