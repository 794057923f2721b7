"""Cell Tracking Challenge layout: track tables, atomic writers, checked readers, TRA via py-ctcmetrics."""

import numpy as np
import pytest
import tifffile

import monaiseg.data.ctc as ctc
from monaiseg.data.ctc import (
    read_ctc_frames,
    read_ctc_tracks,
    split_track_gaps,
    track_table,
    write_ctc_gt,
    write_ctc_result,
)
from monaiseg.metrics.tracking import tracking_accuracy


def two_cells(num_frames: int = 4) -> np.ndarray:
    """Two static 4x4 cells, labels 1 (top-left) and 2 (bottom-right), in 12x12 frames."""
    masks = np.zeros((num_frames, 12, 12), np.uint16)
    masks[:, 1:5, 1:5] = 1
    masks[:, 7:11, 7:11] = 2
    return masks


def division() -> np.ndarray:
    """Cell 1 in frames 0-1 divides into 2 and 3 (frames 2-3)."""
    masks = np.zeros((4, 12, 12), np.uint16)
    masks[:2, 1:5, 1:9] = 1
    masks[2:, 1:5, 1:5] = 2
    masks[2:, 1:5, 5:9] = 3
    return masks


def test_track_table_and_gap_splitting():
    masks = division()
    assert track_table(masks, {2: 1, 3: 1}).tolist() == [[1, 0, 1, 0], [2, 2, 3, 1], [3, 2, 3, 1]]
    with pytest.raises(ValueError, match="parent 1 ends at frame 3, not before its child 2 begins at frame 0"):
        track_table(two_cells(), {2: 1})
    with pytest.raises(ValueError, match="parent label 7 of track 2"):
        track_table(masks, {2: 7})
    gap = two_cells(5)
    gap[2][gap[2] == 1] = 0
    with pytest.raises(ValueError, match=r"label 1 is absent from frame\(s\) \[2\]"):
        track_table(gap)
    # reappearances get new labels from max + 1 = 5: label 1 at frame 3 -> 5 (parent 1), label 2 at frame 4 -> 6;
    # child 4 of label 1, born at frame 4, now descends from 5, the run of 1 that ends last before frame 4
    gap[3][gap[3] == 2] = 0
    gap[4][gap[4] == 1] = 0
    gap[4, 1:3, 1:3] = 4
    split, parents = split_track_gaps(gap, {4: 1})
    assert parents == {5: 1, 6: 2, 4: 5}
    assert track_table(split, parents).tolist() == [
        [1, 0, 1, 0],
        [2, 0, 2, 0],
        [4, 4, 4, 5],
        [5, 3, 3, 1],
        [6, 4, 4, 2],
    ]
    assert np.array_equal(split[3], np.where(gap[3] == 1, 5, gap[3])) and (split[4] == 6).sum() == 16


def test_write_read_round_trip(tmp_path):
    masks = division()
    frames = np.random.default_rng(0).integers(0, 65535, (4, 12, 12), dtype=np.uint16)
    seq = write_ctc_gt(tmp_path, "01", frames, masks, parents={2: 1, 3: 1})
    assert seq == tmp_path / "01" and sorted(p.name for p in tmp_path.iterdir()) == ["01", "01_GT"]
    assert sorted(p.name for p in seq.iterdir()) == ["t000.tif", "t001.tif", "t002.tif", "t003.tif"]
    assert (tmp_path / "01_GT/TRA/man_track.txt").read_text() == "1 0 1 0\n2 2 3 1\n3 2 3 1\n"
    assert np.array_equal(tifffile.imread(tmp_path / "01_GT/SEG/man_seg002.tif"), masks[2])
    assert np.array_equal(read_ctc_frames(seq), frames)
    read_masks, table = read_ctc_tracks(tmp_path / "01_GT")
    assert read_masks.dtype == np.int32 and np.array_equal(read_masks, masks)
    assert table.tolist() == [[1, 0, 1, 0], [2, 2, 3, 1], [3, 2, 3, 1]]

    rgb = np.zeros((2, 12, 12, 3), np.uint8)
    rgb[1, ..., 0] = 255
    write_ctc_gt(tmp_path, "02", rgb, two_cells(2), seg=False)
    assert np.array_equal(read_ctc_frames(tmp_path / "02"), rgb)
    assert not (tmp_path / "02_GT/SEG").exists()

    gap = two_cells(3)
    gap[1][gap[1] == 2] = 0
    res = write_ctc_result(tmp_path / "01_RES", gap)
    assert (res / "res_track.txt").read_text() == "1 0 2 0\n2 0 0 0\n3 2 2 2\n"
    assert sorted(p.name for p in res.iterdir()) == ["mask000.tif", "mask001.tif", "mask002.tif", "res_track.txt"]


def test_four_digit_frame_numbers(tmp_path):
    masks = np.zeros((1000, 2, 2), np.uint16)
    masks[:, 0, 0] = 1
    res = write_ctc_result(tmp_path / "RES", masks)
    assert (res / "mask0999.tif").exists() and (res / "res_track.txt").read_text() == "1 0 999 0\n"


def test_writers_are_atomic(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="frames must be uint8 or uint16"):
        write_ctc_gt(tmp_path, "01", np.zeros((4, 12, 12), np.float32), two_cells())
    with pytest.raises(ValueError, match="differ in"):
        write_ctc_gt(tmp_path, "01", np.zeros((3, 12, 12), np.uint8), two_cells())
    with pytest.raises(ValueError, match="uint16"):
        write_ctc_result(tmp_path / "01_RES", two_cells().astype(np.int64) * 40000)
    assert list(tmp_path.iterdir()) == []

    def fail(*args):
        raise OSError("disk full")

    with monkeypatch.context() as patch:  # the frames are written, then the GT fails: nothing is left
        patch.setattr(ctc, "write_tracks", fail)
        with pytest.raises(OSError, match="disk full"):
            write_ctc_gt(tmp_path, "01", np.zeros((4, 12, 12), np.uint8), two_cells())
    assert list(tmp_path.iterdir()) == []

    write_ctc_gt(tmp_path, "01", np.zeros((4, 12, 12), np.uint8), two_cells())
    (tmp_path / "01").rename(tmp_path / "01_old")
    with pytest.raises(FileExistsError, match="01_GT: already exists"):
        write_ctc_gt(tmp_path, "01", np.zeros((4, 12, 12), np.uint8), two_cells())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["01_GT", "01_old"]


def test_read_single_channel_frames(tmp_path):
    for t in range(2):  # (H, W, 1) pages read as grey (H, W)
        tifffile.imwrite(tmp_path / f"t{t:03d}.tif", np.full((8, 8, 1), t, np.uint8), photometric="minisblack")
    frames = read_ctc_frames(tmp_path)
    assert frames.shape == (2, 8, 8) and frames[1].min() == 1


def test_read_ctc_frames_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no frames"):
        tmp_path.joinpath("empty").mkdir()
        read_ctc_frames(tmp_path / "empty")
    seq = tmp_path / "01"
    seq.mkdir()
    tifffile.imwrite(seq / "t000.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(seq / "t001.tif", np.zeros((8, 9), np.uint8))
    with pytest.raises(ValueError, match=r"t000.tif is \(8, 8\) uint8 but .*t001.tif is \(8, 9\) uint8"):
        read_ctc_frames(seq)
    tifffile.imwrite(seq / "t001.tif", np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match="t001.tif: dtype float32"):
        read_ctc_frames(seq)
    tifffile.imwrite(seq / "t001.tif", np.zeros((8, 8, 4), np.uint8), photometric="rgb")
    with pytest.raises(ValueError, match=r"t001.tif: shape \(8, 8, 4\)"):
        read_ctc_frames(seq)
    (seq / "t001.tif").rename(seq / "t002.tif")
    with pytest.raises(ValueError, match=r"frame\(s\) \[1\] missing"):
        read_ctc_frames(seq)


def gt_tree(tmp_path, track_txt: str):
    """CTC GT folder with the two_cells masks (3 frames) and the given man_track.txt."""
    write_ctc_gt(tmp_path, "01", np.zeros((3, 12, 12), np.uint8), two_cells(3), seg=False)
    (tmp_path / "01_GT/TRA/man_track.txt").write_text(track_txt)
    return tmp_path / "01_GT"


@pytest.mark.parametrize(
    "track_txt, message",
    [
        ("1 0 2 0\n2 0 5 0\n", "track 2 ends at frame 5 but .* has frames 0-2 only"),
        ("1 0 2 0\n2 0 2 0\n3 1 2 0\n", r"label 3 is absent from \['man_track001.tif', 'man_track002.tif'\]"),
        ("1 0 2 0\n2 0 1 0\n", r"label 2 is in \['man_track002.tif'\], outside its span 0-1"),
        ("1 0 2 0\n", r"label\(s\) \[2\] of the masks"),
        ("1 0 2 0\n2 0 x 0\n", r"man_track.txt: line 2: expected 4 non-negative integers"),
        ("1 0 2 0\n2 0 2\n", "line 2: expected 4"),
        ("1 0 2 0\n2 2 0 0\n", "line 2: need label > 0 and begin <= end"),
        ("1 0 2 0\n2 0 2 1\n", "parent 1 ends at frame 2, not before its child 2"),
    ],
)
def test_read_ctc_tracks_errors(tmp_path, track_txt, message):
    with pytest.raises(ValueError, match=message) as info:
        read_ctc_tracks(gt_tree(tmp_path, track_txt))
    assert "man_track" in str(info.value)


def test_read_ctc_tracks_mask_size_mismatch(tmp_path):
    gt = gt_tree(tmp_path, "1 0 2 0\n2 0 2 0\n")
    tifffile.imwrite(gt / "TRA/man_track001.tif", np.zeros((12, 13), np.uint16))
    with pytest.raises(ValueError, match=r"man_track000.tif is \(12, 12\) uint16 but .*man_track001.tif is \(12, 13\)"):
        read_ctc_tracks(gt)


def test_tracking_accuracy_against_aogm_by_hand():
    gt = two_cells()  # 8 GT vertices, 6 GT links: AOGM_0 = 10 * 8 + 1.5 * 6 = 89
    assert tracking_accuracy(gt, gt) == 1.0
    # labels need not agree, only the tracks; large labels would overflow inside ctc_metrics without renumbering
    assert tracking_accuracy(np.where(gt > 0, gt + 40000, 0), np.where(gt > 0, gt + 30000, 0)) == 1.0
    swapped = gt.copy()  # identities swapped from frame 2: 2 redundant (ED) + 2 missing (EA) links
    swapped[2:][gt[2:] == 1], swapped[2:][gt[2:] == 2] = 2, 1
    assert tracking_accuracy(swapped, gt) == pytest.approx(1 - (2 * 1 + 2 * 1.5) / 89)
    missing = gt.copy()  # cell 2 lost in the last frame: 1 FN vertex + 1 missing link
    missing[3][gt[3] == 2] = 0
    assert tracking_accuracy(missing, gt) == pytest.approx(1 - (10 + 1.5) / 89)
    assert tracking_accuracy(np.zeros_like(gt), gt) == 0.0
    # division: 6 vertices, 3 track + 2 parent links -> AOGM_0 = 67.5; no parents predicted: 2 EA
    cells = division()
    assert tracking_accuracy(cells, cells, {2: 1, 3: 1}, {2: 1, 3: 1}) == 1.0
    assert tracking_accuracy(cells, cells, gt_parents={2: 1, 3: 1}) == pytest.approx(1 - 3 / 67.5)
    with pytest.raises(ValueError, match="gt has no objects"):
        tracking_accuracy(gt, np.zeros_like(gt))
    with pytest.raises(ValueError, match="differ in shape"):
        tracking_accuracy(gt[:3], gt)
