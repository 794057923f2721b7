import cv2
import numpy as np
import pytest

from monaiseg.data.video import read_video, write_mask_frames

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (128, 128, 128)]  # RGB


def write_mp4(path, size=(64, 48), fps=10.0):
    """Five solid-colour frames, width x height = size."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    assert writer.isOpened()
    for rgb in COLOURS:
        writer.write(np.full((size[1], size[0], 3), rgb[::-1], np.uint8))  # OpenCV writes BGR
    writer.release()
    return path


def test_read_mp4(tmp_path):
    frames, fps, names = read_video(write_mp4(tmp_path / "clip.mp4"))
    assert frames.shape == (5, 48, 64, 3) and frames.dtype == np.uint8
    assert fps == pytest.approx(10.0)
    assert names == ["00000", "00001", "00002", "00003", "00004"]
    mean_rgb = frames.reshape(5, -1, 3).mean(axis=1)
    assert np.abs(mean_rgb - np.array(COLOURS)).max() < 8  # lossy codec, RGB order kept


def test_read_frame_folder_natural_sort(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for name, rgb in zip(["10.png", "2.jpg", "1.PNG"], COLOURS):
        cv2.imwrite(str(folder / name), np.full((6, 8, 3), rgb[::-1], np.uint8))
    (folder / "notes.txt").write_text("not a frame")
    frames, fps, names = read_video(folder)
    assert names == ["1", "2", "10"] and fps is None
    assert frames.shape == (3, 6, 8, 3)
    assert (frames[0] == COLOURS[2]).all() and (frames[2] == COLOURS[0]).all()  # PNG: exact
    assert np.abs(frames[1].astype(int) - COLOURS[1]).max() < 4  # JPEG: approximate


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mp4: video or frame folder not found"):
        read_video(tmp_path / "missing.mp4")

    data = write_mp4(tmp_path / "full.mp4").read_bytes()
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"^{truncated}: no frame could be decoded"):
        read_video(truncated)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match=f"^{empty}: folder has no frame images"):
        read_video(empty)

    mixed = tmp_path / "mixed"
    mixed.mkdir()
    cv2.imwrite(str(mixed / "0.png"), np.zeros((6, 8, 3), np.uint8))
    cv2.imwrite(str(mixed / "1.png"), np.zeros((6, 9, 3), np.uint8))
    with pytest.raises(ValueError, match=f"^{mixed}: frames have different sizes: 0.png is 8x6, 1.png is 9x6"):
        read_video(mixed)


def test_write_mask_frames_round_trip(tmp_path):
    masks = np.random.default_rng(0).integers(0, 5, size=(3, 7, 9)).astype(np.int64)
    masks[0, 0, 0] = 255
    out = write_mask_frames(masks, tmp_path / "pred" / "case1", ["1", "2", "10"])
    assert sorted(p.name for p in out.iterdir()) == ["1.png", "10.png", "2.png"]
    for mask, name in zip(masks, ["1", "2", "10"]):
        back = cv2.imread(str(out / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert back.dtype == np.uint8 and np.array_equal(back, mask)
    assert [p.name for p in out.parent.iterdir()] == ["case1"]  # no temporary folder left
    # an empty existing folder is fine
    (tmp_path / "empty_out").mkdir()
    write_mask_frames(masks[:1], tmp_path / "empty_out", ["0"])
    assert [p.name for p in (tmp_path / "empty_out").iterdir()] == ["0.png"]


def test_write_mask_frames_refuses_and_leaves_nothing(tmp_path):
    masks = np.zeros((2, 4, 4), np.uint8)
    out = write_mask_frames(masks, tmp_path / "out", ["a", "b"])
    with pytest.raises(FileExistsError, match="out: already exists and is not an empty folder"):
        write_mask_frames(masks + 1, out, ["a", "b"])
    assert np.array_equal(cv2.imread(str(out / "a.png"), cv2.IMREAD_UNCHANGED), masks[0])  # untouched

    with pytest.raises(ValueError, match="values must be in 0-255"):
        write_mask_frames(np.full((1, 2, 2), 256), tmp_path / "big", ["a"])
    with pytest.raises(ValueError, match="need 2 distinct frame names"):
        write_mask_frames(masks, tmp_path / "dup", ["a", "a"])
    with pytest.raises(ValueError, match="integer array"):
        write_mask_frames(masks.astype(np.float32), tmp_path / "float", ["a", "b"])
    with pytest.raises(OSError, match="could not write frame"):  # fails after the first frame was written
        write_mask_frames(masks, tmp_path / "bad", ["ok", "no/such/dir"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
