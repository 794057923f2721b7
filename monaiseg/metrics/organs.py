"""Dice and HD95 per organ per case (MONAI), with the paper-style mean table (HF-SAM / SAMed).

Scores are computed on integer label maps (X, Y[, Z]) with MONAI's ``DiceMetric`` and
``HausdorffDistanceMetric(percentile=95)``; HD95 is in mm when a voxel spacing is given (or read
from a ``MetaTensor``'s affine), in voxels otherwise (upstream evaluates with unit spacing).

An organ absent from the ground truth and/or the prediction of a case scores, per ``empty``:

====================  ============================  ==========================
case                  ``"upstream"`` (default)      ``"monai"``
====================  ============================  ==========================
both present          Dice, HD95                    Dice, HD95
only prediction       1, 0                          NaN, NaN
only ground truth     0, 0                          0, NaN
neither               0, 0                          NaN, NaN
====================  ============================  ==========================

``"upstream"`` is SAMed's ``calculate_metric_percase`` (from TransUNet), used by HF-SAM and H-SAM
for their tables; ``"monai"`` is what ``DiceMetric()`` (``ignore_empty=True``) and
``HausdorffDistanceMetric`` return, NaNs left out of the means. HD95 itself: MONAI takes the 95th
percentile of each directed surface distance set and the larger of the two; upstream (medpy)
takes the 95th percentile of both sets pooled, which can be slightly smaller.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch
from monai.data import MetaTensor
from monai.data.utils import affine_to_spacing
from monai.metrics import DiceMetric, HausdorffDistanceMetric

from monaiseg.utils.distributed import gather_in_dataset_order
from monaiseg.utils.files import atomic_outputs

EMPTY_CONVENTIONS = ("upstream", "monai")
NAN = float("nan")


def _label_map(x, name: str) -> torch.Tensor:
    if isinstance(x, MetaTensor):
        t = x.as_tensor()
    else:
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    if t.ndim == 4 and t.shape[0] == 1:  # channel-first (1, X, Y, Z) as MONAI transforms give it
        t = t[0]
    if t.ndim not in (2, 3):
        raise ValueError(f"{name}: expected a label map (X, Y) or (X, Y, Z), got shape {tuple(t.shape)}")
    return t


def _spacing(gt, ndim: int, spacing) -> list[float] | None:
    if spacing is None and isinstance(gt, MetaTensor):
        spacing = affine_to_spacing(gt.affine, r=ndim)
    if spacing is None:
        return None
    spacing = [float(s) for s in np.ravel(spacing)]
    if len(spacing) != ndim:
        raise ValueError(f"spacing {spacing} does not match a {ndim}D label map")
    return spacing


def _bounding_box(mask: torch.Tensor) -> tuple[slice, ...]:
    """Slices of the bounding box of a non-empty mask, one voxel of margin (within the array)."""
    box = []
    for axis in range(mask.ndim):
        hits = torch.nonzero(mask.any(dim=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(int(hits[0]) - 1, 0), int(hits[-1]) + 2))
    return tuple(box)


def organ_scores(
    pred, gt, labels: Sequence[int], spacing: Sequence[float] | None = None, empty: str = "upstream"
) -> dict[int, dict[str, float]]:
    """``{label: {"dice": float, "hd95": float}}`` of integer label maps ``pred``, ``gt`` of one case.

    ``pred``, ``gt``: (X, Y[, Z]) or (1, X, Y, Z) arrays / tensors; ``spacing``: voxel size (mm) per
    axis, ``None`` for the ``gt`` MetaTensor's affine or unit spacing. ``empty``: see module docstring.
    """
    if empty not in EMPTY_CONVENTIONS:
        raise ValueError(f"empty must be one of {EMPTY_CONVENTIONS}, got {empty!r}")
    p, g = _label_map(pred, "prediction"), _label_map(gt, "ground truth")
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {tuple(p.shape)} differs from ground truth shape {tuple(g.shape)}")
    spacing = _spacing(gt, g.ndim, spacing)
    dice_metric = DiceMetric(include_background=True, reduction="none")
    hd_metric = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")
    scores = {}
    for value in labels:
        pv, gv = p == value, g == value
        in_pred, in_gt = bool(pv.any()), bool(gv.any())
        if in_pred and in_gt:
            box = _bounding_box(pv | gv)  # MONAI crops the same way; cropping first saves full-volume passes
            pv, gv = pv[box][None, None].float(), gv[box][None, None].float()  # (1, 1, X', Y'[, Z'])
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*always_return_as_numpy")
                # MONAI metrics return a tensor for tensor inputs (a list only for lists of tensors)
                dice = float(cast(torch.Tensor, dice_metric(pv, gv))[0, 0])
                hd95 = float(cast(torch.Tensor, hd_metric(pv, gv, spacing=spacing))[0, 0])
        elif empty == "upstream":
            dice, hd95 = (1.0, 0.0) if in_pred else (0.0, 0.0)
        else:
            dice, hd95 = (0.0 if in_gt else NAN), NAN
        scores[int(value)] = {"dice": dice, "hd95": hd95}
    return scores


def _mean(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return float(np.mean(kept)) if kept else NAN


def _slug(name: str) -> str:
    return name.replace(" ", "_")


class OrganMetrics:
    """Accumulates per-case organ scores; summary = mean per organ over cases, then over organs.

    ``labels``: class id -> organ name (``0`` / background is dropped), e.g. a datalist's ``"labels"``.
    """

    def __init__(self, labels: Mapping[int | str, str], empty: str = "upstream"):
        if empty not in EMPTY_CONVENTIONS:
            raise ValueError(f"empty must be one of {EMPTY_CONVENTIONS}, got {empty!r}")
        self.organs = {int(k): v for k, v in sorted(labels.items(), key=lambda kv: int(kv[0])) if int(k) != 0}
        if not self.organs:
            raise ValueError(f"no organ labels besides background in {dict(labels)}")
        self.empty = empty
        self.cases: dict[str, dict[int, dict[str, float]]] = {}

    def reset(self) -> None:
        self.cases = {}

    def add(self, case: str, pred, gt, spacing: Sequence[float] | None = None) -> dict[int, dict[str, float]]:
        """Score one case (see :func:`organ_scores`) and keep it; returns its scores."""
        if case in self.cases:
            raise ValueError(f"case {case!r} was already scored")
        self.cases[case] = organ_scores(pred, gt, list(self.organs), spacing, self.empty)
        return self.cases[case]

    def gather(self) -> None:
        """Merge the cases scored on every rank of a torch.distributed evaluation (each rank holding its
        `DistributedSampler` shard), in dataset order, on every rank; a collective call, no-op in one process."""
        self.cases = dict(gather_in_dataset_order(list(self.cases.items())))

    def rows(self) -> list[dict]:
        """One row per case: case, mean dice and hd95 over organs, then dice_<organ>, hd95_<organ>."""
        rows = []
        for case, scores in self.cases.items():
            row = {
                "case": case,
                "dice": _mean([s["dice"] for s in scores.values()]),
                "hd95": _mean([s["hd95"] for s in scores.values()]),
            }
            for value, name in self.organs.items():
                row[f"dice_{_slug(name)}"] = scores[value]["dice"]
                row[f"hd95_{_slug(name)}"] = scores[value]["hd95"]
            rows.append(row)
        return rows

    def summary(self) -> dict:
        """``{"cases", "empty", "hd95_unit", "organs": {name: {"label", "dice", "hd95"}},
        "mean": {"dice", "hd95"}}``; the overall mean is the mean of the organ means (as upstream)."""
        if not self.cases:
            raise ValueError("no case scored yet")
        organs = {
            name: {
                "label": value,
                "dice": _mean([s[value]["dice"] for s in self.cases.values()]),
                "hd95": _mean([s[value]["hd95"] for s in self.cases.values()]),
            }
            for value, name in self.organs.items()
        }
        return {
            "cases": len(self.cases),
            "empty": self.empty,
            "hd95_unit": "mm (voxels without spacing)",
            "organs": organs,
            "mean": {k: _mean([o[k] for o in organs.values()]) for k in ("dice", "hd95")},
        }

    def write(self, output_dir: str | os.PathLike, name: str = "organ_metrics") -> tuple[Path, Path]:
        """Write ``<name>.csv`` (per case) and ``<name>.json`` (summary + per case) atomically."""
        output_dir = Path(output_dir)
        summary, rows = self.summary(), self.rows()
        csv_path, json_path = output_dir / f"{name}.csv", output_dir / f"{name}.json"
        with atomic_outputs(csv_path, json_path) as (csv_tmp, json_tmp):
            with open(csv_tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
            json_tmp.write_text(json.dumps({**summary, "per_case": rows}, indent=2) + "\n")
        return csv_path, json_path


def organ_table(summary: Mapping, organs: Sequence[str] | None = None, method: str = "ours") -> str:
    """Markdown row block like the papers' tables: mean Dice (%), mean HD95, then Dice (%) per organ.

    ``organs``: column order (default: the summary's); HF-SAM orders Synapse alphabetically
    (aorta, gallbladder, kidney L, kidney R, liver, pancreas, spleen, stomach).
    """
    organs = list(organs or summary["organs"])
    header = ["Method", "DSC (%)", "HD95", *organs]
    row = [
        method,
        f"{100 * summary['mean']['dice']:.2f}",
        f"{summary['mean']['hd95']:.2f}",
        *(f"{100 * summary['organs'][o]['dice']:.2f}" for o in organs),
    ]
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header), "| " + " | ".join(row) + " |"])
