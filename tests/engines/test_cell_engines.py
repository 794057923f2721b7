"""Engine pieces of the cell bundles on hand-made cases: instance prompting, clip batches and
curriculum, evaluation reports, 2D prompt transforms, datalists and checkpoints."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monaiseg.data.datalist import datalist_items
from monaiseg.engines import PrepareCellClipBatch, PrepareOptionalBoxes
from monaiseg.handlers import CellReportWriter, ClipCurriculum, TrackingReportWriter
from monaiseg.inferers import InstancePromptInferer, instance_ids
from monaiseg.networks import CheckpointMismatchError, load_model_weights
from monaiseg.transforms import CheckImaged, InstanceBoxesd, LoadBoxesd, SaveOverlayd


class BoxPainter(torch.nn.Module):
    """Stub segmenter: each box -> logits +5 inside, -5 outside; no prompt -> two fixed blobs."""

    def predict_masks(self, images, boxes=None, density=None):
        _, _, height, width = images.shape
        batch = images.shape[0] if boxes is None else len(boxes)
        logits = torch.full((batch, 1, height, width), -5.0)
        if boxes is None:
            logits[:, :, 2:5, 2:5] = 5
            logits[:, :, 10:14, 8:12] = 5
        else:
            for b, (x0, y0, x1, y1) in enumerate(boxes.round().long().tolist()):
                logits[b, 0, y0 : y1 + 1, x0 : x1 + 1] = 5 + b  # later boxes win overlaps
        return logits, torch.ones(batch, 1)


def test_instance_ids_take_highest_positive_logit():
    logits = torch.tensor([[[[1.0, -1.0], [3.0, -2.0]]], [[[2.0, -1.0], [-1.0, -3.0]]]])  # (K=2, 1, 2, 2)
    assert instance_ids(logits).tolist() == [[2, 0], [1, 0]]


def test_instance_prompt_inferer_boxes_and_automatic():
    images = torch.zeros(1, 3, 16, 16)
    boxes = torch.tensor([[[1.0, 1.0, 4.0, 3.0], [3.0, 2.0, 6.0, 6.0], [float("nan")] * 4]])
    out = InstancePromptInferer()(images, BoxPainter(), boxes=boxes)
    assert out.shape == (1, 1, 16, 16)
    expected = torch.zeros(16, 16)
    expected[1:4, 1:5] = 1
    expected[2:7, 3:7] = 2  # the NaN row is padding, not an object
    assert torch.equal(out[0, 0], expected)
    auto = InstancePromptInferer()(images, BoxPainter())[0, 0]
    assert sorted(torch.unique(auto).tolist()) == [0, 1, 2] and auto[3, 3] != auto[11, 9]


def test_instance_boxes_and_user_boxes_transforms(tmp_path):
    label = torch.zeros(1, 10, 12, dtype=torch.int32)
    label[0, 2:4, 5:9] = 3
    label[0, 6:9, 1:2] = 7
    boxes = InstanceBoxesd()({"label": label})["boxes"]
    assert boxes.tolist() == [[5, 2, 8, 3], [1, 6, 1, 8]]
    assert InstanceBoxesd()({"label": torch.zeros(1, 4, 4)})["boxes"].shape == (0, 4)

    path = tmp_path / "boxes.json"
    path.write_text(json.dumps([[1, 2, 5, 8]]))  # viewer (x, y); the array is (C, X, Y) as MONAI loads PNG
    image = MetaTensor(torch.zeros(3, 10, 12))
    assert LoadBoxesd()({"image": image, "boxes": str(path)})["boxes"].tolist() == [[2, 1, 8, 5]]
    path.write_text(json.dumps([[1, 2, 10, 8]]))  # x1 = 10 is outside a 10-pixel-wide image
    with pytest.raises(ValueError, match=f"{path}.*outside"):
        LoadBoxesd()({"image": image, "boxes": str(path)})
    assert "boxes" not in LoadBoxesd()({"image": image})


def test_check_image_channels_and_bit_depth():
    check = CheckImaged("image", spatial_dims=2, channels=[3], dtypes=["uint8"])
    good = torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8)
    assert check({"image": good})["image"] is good
    with pytest.raises(ValueError, match="4 channels, expected 3"):
        check({"image": torch.randint(0, 255, (4, 8, 8), dtype=torch.uint8)})
    with pytest.raises(ValueError, match="int32 .bit depth."):
        check({"image": torch.randint(0, 60000, (3, 8, 8), dtype=torch.int32)})


def test_prepare_cell_clip_batch_and_optional_boxes():
    batch = {"image": torch.rand(1, 3, 8, 8, 4), "label": torch.rand(1, 2, 8, 8, 4), "box": torch.rand(1, 2, 4)}
    image, targets, args, kwargs = PrepareCellClipBatch(return_memory=True)(batch)
    assert image.shape == (1, 3, 8, 8, 4) and targets.shape == (2, 1, 8, 8, 4) and args == ()
    assert kwargs["boxes"].shape == (2, 4) and kwargs["return_memory"] is True
    assert torch.equal(targets[1, 0], batch["label"][0, 1])
    with pytest.raises(ValueError, match="batch_size 1"):
        PrepareCellClipBatch()({k: torch.cat([v, v]) for k, v in batch.items()})
    image, label, _, prompts = PrepareOptionalBoxes()({"image": torch.rand(1, 3, 4, 4), "label": ["not/loaded.png"]})
    assert label is None and prompts == {}


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


def test_save_overlay_writes_png_in_file_orientation(tmp_path):
    import cv2

    image = MetaTensor(torch.zeros(3, 20, 10), meta={"filename_or_obj": "/data/cell_7.png"})  # (C, X, Y)
    pred = torch.zeros(1, 20, 10)
    pred[0, 15:, :] = 1  # right part of the image (large x)
    SaveOverlayd(output_dir=str(tmp_path))({"image": image, "pred": pred})
    png = cv2.imread(str(tmp_path / "cell_7_overlay.png"))
    assert png.shape == (10, 20, 3)  # rows = y, columns = x
    assert png[:, 15:].any() and not png[:, :15].any()
    SaveOverlayd(output_dir=str(tmp_path / "off"), enabled=False)({"image": image, "pred": pred})
    assert not (tmp_path / "off").exists()


def test_datalist_items_with_optional_keys(tmp_path):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [{"image": "a.png"}], "training_generic": [{"image": "g.png"}]}))
    items = datalist_items(path, tmp_path, ["training"], ["training_generic", "absent"])
    assert [i["image"] for i in items] == [str(tmp_path / "a.png"), str(tmp_path / "g.png")]
    with pytest.raises(ValueError, match="no 'videos' list"):
        datalist_items(path, tmp_path, ["videos"])


def test_load_model_weights_strict(tmp_path):
    net = torch.nn.Linear(3, 2)
    torch.save({"model": {k: v + 1 for k, v in net.state_dict().items()}}, tmp_path / "good.pt")
    other = torch.nn.Linear(3, 2)
    assert load_model_weights(other, "none") is other
    load_model_weights(other, tmp_path / "good.pt")
    assert torch.equal(other.weight, net.weight + 1)
    torch.save({"model": {"weight": net.weight}}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError, match="bad.pt.*\n.*missing keys.*bias"):
        load_model_weights(other, tmp_path / "bad.pt")
