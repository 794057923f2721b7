"""Cell-bundle handlers on hand-made engine states: clip curriculum, per-cell-type and tracking reports."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monaiseg.handlers import CellReportWriter, ClipCurriculum, TrackingReportWriter


def test_clip_curriculum_sets_length_per_epoch():
    sampler = SimpleNamespace(clip_length=3)
    curriculum = ClipCurriculum(sampler, {"1": 3, "3": 8, "6": 16})
    assert [curriculum.length_at(e) for e in (1, 2, 3, 5, 6, 40)] == [3, 3, 8, 8, 16, 16]
    curriculum(SimpleNamespace(state=SimpleNamespace(epoch=4)))
    assert sampler.clip_length == 8
    with pytest.raises(ValueError, match="start at epoch 1"):
        ClipCurriculum(sampler, {"2": 4})


def _engine(batch, output, metrics):
    return SimpleNamespace(state=SimpleNamespace(batch=batch, output=output, metrics=metrics))


def test_cell_report_counts_pixels_per_type(tmp_path):
    def onehot(mask):
        mask = torch.as_tensor(mask)
        return torch.stack([~mask, mask]).float()

    pred = np.zeros((4, 4), bool)
    pred[0, :3] = True
    label = np.zeros((4, 4), bool)
    label[0, 1:] = True  # tp 2, fp 1, fn 1
    writer = CellReportWriter(str(tmp_path), ["val_mean_dice"], {"1": "neutrophil", "2": "lymphocyte"})
    writer.collect(
        _engine(
            [{"cell_type": 1}, {"cell_type": 2}],
            [{"pred": onehot(pred), "label": onehot(label)}, {"pred": onehot(label), "label": onehot(label)}],
            {},
        )
    )
    writer.timing.seconds, writer.timing.items = 2.0, 2
    writer.write(_engine([], [], {"val_mean_dice": 0.5}))
    summary = json.loads((tmp_path / "summary.json").read_text())
    neutrophil = summary["per_cell_type"]["neutrophil"]
    assert (neutrophil["tp"], neutrophil["fp"], neutrophil["fn"]) == (2, 1, 1)
    assert neutrophil["precision"] == pytest.approx(2 / 3) and summary["per_cell_type"]["lymphocyte"]["f1"] == 1.0
    assert summary["fps"] == 1.0 and summary["val_mean_dice"] == 0.5
    assert (tmp_path / "cell_types.csv").read_text().count("\n") == 4  # header, 2 types, macro


def test_tracking_report_perfect_and_swapped(tmp_path):
    from monaiseg.data.ctc import write_ctc_gt

    masks = np.zeros((4, 12, 10), np.uint16)
    for t in range(4):
        masks[t, 1:4, t : t + 3] = 1
        masks[t, 7:10, 5:8] = 2
    gt_dir = write_ctc_gt(tmp_path / "gt", "01", np.zeros((4, 12, 10), np.uint8), masks) / "01_GT" / "TRA"
    ids = MetaTensor(
        torch.from_numpy(masks.transpose(2, 1, 0)[None].astype(np.float32)), meta={"filename_or_obj": str(gt_dir)}
    )  # (1, X, Y, T) as LoadCTCd gives it
    swapped = ids.clone()
    swapped[..., 2:] = torch.where(ids[..., 2:] == 1, 2.0, torch.where(ids[..., 2:] == 2, 1.0, 0.0))
    writer = TrackingReportWriter(str(tmp_path / "eval"))
    outputs = [{"pred_ids": ids, "label_ids": ids}, {"pred_ids": swapped, "label_ids": ids}]
    writer.collect(_engine([{"label": ids}], outputs[:1], {}))
    writer.collect(_engine([{"label": ids}], outputs[1:], {}))
    writer.write(_engine([], [], {}))
    rows = json.loads((tmp_path / "eval" / "tracking.json").read_text())["videos"]
    assert rows[0]["tra"] == 1.0 and rows[1]["tra"] < 1.0
    written = sorted((tmp_path / "eval" / "tracking" / "01_RES").glob("mask*.tif"))
    assert len(written) == 4
