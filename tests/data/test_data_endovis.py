"""EndoVis2018 / EndoVis2017 converters on small fake official trees; synthetic surgical scenes."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from monaiseg.data.endovis import (
    ENDOVIS2017_CLASSES,
    ENDOVIS2018_CLASSES,
    check_class_map,
    convert_endovis2017,
    convert_endovis2018,
)
from monaiseg.data.synthetic_surgical import main as synthetic_main
from monaiseg.data.synthetic_surgical import make_synthetic_surgical_dataset

H, W = 12, 16


def _frame(seed: int, h: int = H, w: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _box(y0, y1, x0, x1, h=H, w=W, value=255) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[y0:y1, x0:x1] = value
    return mask


def _snapshot(root: Path) -> dict:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ EndoVis2018 (ISINet labels)


@pytest.fixture()
def src2018(tmp_path) -> Path:
    """seq_1 (train) and seq_2 (validation) in release 1, seq_3 in release 2; two frames each.
    frame000 of every sequence: class 1 in rows 0-5 x cols 0-7, class 4 in rows 4-9 x cols 4-11
    (a colour mask, painted over class 1 where they overlap); frame001: no instrument."""
    src = tmp_path / "EndoVis2018"
    for release, seqs in (("miccai_challenge_2018_release_1", (1, 2)), ("miccai_challenge_release_2", (3,))):
        for s in seqs:
            seq = src / release / f"seq_{s}"
            for f in range(2):
                _save(seq / "left_frames" / f"frame{f:03d}.png", _frame(10 * s + f))
            labels = seq / "instrument_labels"
            _save(labels / "frame000_class1_inst0.png", _box(0, 6, 0, 8))
            _save(labels / "frame000_class4_inst0.png", np.stack([_box(4, 10, 4, 12)] * 3, axis=-1))
    return src


def _expected_2018_mask() -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[0:6, 0:8] = 1
    mask[4:10, 4:12] = 4
    return mask


def test_convert_endovis2018(src2018, tmp_path):
    before = _snapshot(src2018)
    dst = convert_endovis2018(src2018, tmp_path / "out")
    content = json.loads((dst / "datalist.json").read_text())
    assert content["classes"] == list(ENDOVIS2018_CLASSES)
    assert [(i["sequence"], i["frame"]) for i in content["training"]] == [
        ("seq_1", 0),
        ("seq_1", 1),
        ("seq_3", 0),
        ("seq_3", 1),
    ]
    assert [i["sequence"] for i in content["validation"]] == ["seq_2", "seq_2"]
    item = content["validation"][0]
    assert item == {
        "image": "frames/seq_2/00000.png",
        "label": "masks/seq_2/00000.png",
        "sequence": "seq_2",
        "frame": 0,
    }
    np.testing.assert_array_equal(np.asarray(Image.open(dst / item["image"])), _frame(20))
    np.testing.assert_array_equal(np.asarray(Image.open(dst / item["label"])), _expected_2018_mask())
    assert not np.asarray(Image.open(dst / "masks/seq_2/00001.png")).any()
    assert _snapshot(src2018) == before


def test_endovis2018_cli(src2018, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["prepare_endovis2018.py", str(src2018), str(tmp_path / "out")])
    runpy.run_path(str(REPO / "scripts" / "prepare_endovis2018.py"), run_name="__main__")
    assert "training: 4 frames, validation: 2 frames" in capsys.readouterr().out


@pytest.mark.parametrize(
    "problem", ["mixed_sizes", "mask_size", "class_id", "orphan_label", "no_labels_folder", "no_sequences"]
)
def test_endovis2018_bad_input(src2018, tmp_path, problem):
    seq = src2018 / "miccai_challenge_2018_release_1" / "seq_2"
    if problem == "mixed_sizes":
        bad = seq / "left_frames" / "frame001.png"
        _save(bad, _frame(0, H, W + 2))
        match, error = (
            rf"{bad}: frame is {H}x{W + 2} but the sequence's frames are {H}x{W} \(frames of mixed sizes\)",
            ValueError,
        )
    elif problem == "mask_size":
        bad = seq / "instrument_labels" / "frame001_class2_inst0.png"
        _save(bad, _box(0, 2, 0, 2, h=H + 1))
        match, error = rf"{bad}: mask is {H + 1}x{W} .*\(mask and frame sizes differ\)", ValueError
    elif problem == "class_id":
        bad = seq / "instrument_labels" / "frame001_class9_inst0.png"
        _save(bad, _box(0, 2, 0, 2))
        match, error = rf"{bad}: class id 9 outside the class list \(1..7", ValueError
    elif problem == "orphan_label":
        bad = seq / "instrument_labels" / "frame007_class2_inst0.png"
        _save(bad, _box(0, 2, 0, 2))
        match, error = rf"{bad}: instrument label of frame007, which has no frame", ValueError
    elif problem == "no_labels_folder":
        (seq / "instrument_labels").rename(seq / "labels")
        match, error = rf"{seq}: expected one instrument_labels\* folder", FileNotFoundError
    else:
        src2018 = tmp_path / "empty"
        src2018.mkdir()
        match, error = rf"{src2018}: no EndoVis2018 sequence folders", FileNotFoundError
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        convert_endovis2018(src2018, out)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


# ------------------------------------------------------------------ EndoVis2017

CROP = (1, 2, 8, 10)  # top, left, height, width on 10 x 14 frames
GT_2017 = {1: ("Maryland_Bipolar_Forceps_labels", "Other_labels"), 5: ("Right_Vessel_Sealer",)}


@pytest.fixture()
def src2017(tmp_path) -> Path:
    """instrument_dataset_1..8, two 10x14 frames each, one Left_Prograsp_Forceps_labels folder
    (except datasets 1 and 5, see GT_2017). Masks hold EndoVis2017 part values (10, 20, 30)."""
    src = tmp_path / "train"
    for k in range(1, 9):
        root = src / f"instrument_dataset_{k}"
        for f in range(2):
            _save(root / "left_frames" / f"frame{f:03d}.png", _frame(100 * k + f, 10, 14))
            for j, folder in enumerate(GT_2017.get(k, ("Left_Prograsp_Forceps_labels",))):
                mask = np.zeros((10, 14), np.uint8)
                mask[0:5, 0:7] = 10 if j == 0 else 0
                mask[3:9, 5:14] = 30 if j == 1 else mask[3:9, 5:14]
                _save(root / "ground_truth" / folder / f"frame{f:03d}.png", mask)
    return src


def test_convert_endovis2017(src2017, tmp_path):
    before = _snapshot(src2017)
    dst = convert_endovis2017(src2017, tmp_path / "out", crop=CROP)
    for fold, held_out in {0: (1, 3), 1: (2, 5), 2: (4, 8), 3: (6, 7)}.items():
        content = json.loads((dst / f"datalist_fold{fold}.json").read_text())
        assert content["classes"] == list(ENDOVIS2017_CLASSES)
        assert sorted({i["sequence"] for i in content["validation"]}) == [f"seq_{k}" for k in held_out]
        assert {i["sequence"] for i in content["training"]} == {f"seq_{k}" for k in range(1, 9)} - {
            f"seq_{k}" for k in held_out
        }
        assert len(content["training"]) == 12 and len(content["validation"]) == 4
    image = np.asarray(Image.open(dst / "frames/seq_1/00001.png"))
    np.testing.assert_array_equal(image, _frame(101, 10, 14)[1:9, 2:12])
    # seq 1: Maryland bipolar (class 1) rows 0-4 x cols 0-6, Other (class 7) rows 3-8 x cols 5-13 on top
    full = np.zeros((10, 14), np.uint8)
    full[0:5, 0:7] = 1
    full[3:9, 5:14] = 7
    np.testing.assert_array_equal(np.asarray(Image.open(dst / "masks/seq_1/00000.png")), full[1:9, 2:12])
    seq5 = np.asarray(Image.open(dst / "masks/seq_5/00000.png"))
    assert set(np.unique(seq5)) == {0, 4}  # Right_Vessel_Sealer -> Vessel Sealer
    assert set(np.unique(np.asarray(Image.open(dst / "masks/seq_2/00000.png")))) == {0, 2}
    assert _snapshot(src2017) == before


def test_endovis2017_cli_crops_as_upstream(tmp_path, monkeypatch, capsys):
    """Default crop: rows 28..1051, columns 320..1599 of 1080x1920 frames."""
    src = tmp_path / "train"
    for k in range(1, 9):
        root = src / f"instrument_dataset_{k}"
        frame = np.zeros((1080, 1920, 3), np.uint8)
        frame[28, 320] = frame[1051, 1599] = 255
        _save(root / "left_frames" / "frame000.png", frame)
        _save(root / "ground_truth" / "Bipolar_Forceps_labels" / "frame000.png", frame[..., 0])
    monkeypatch.setattr(sys, "argv", ["prepare_endovis2017.py", str(src), str(tmp_path / "out")])
    runpy.run_path(str(REPO / "scripts" / "prepare_endovis2017.py"), run_name="__main__")
    assert "fold 0: training 6 frames, validation 2 frames" in capsys.readouterr().out
    image = np.asarray(Image.open(tmp_path / "out/frames/seq_3/00000.png"))
    mask = np.asarray(Image.open(tmp_path / "out/masks/seq_3/00000.png"))
    assert image.shape == (1024, 1280, 3) and mask.shape == (1024, 1280)
    assert image[0, 0, 0] == image[-1, -1, 0] == 255 and image.sum() == 2 * 3 * 255
    assert mask[0, 0] == mask[-1, -1] == 1 and mask.sum() == 2


@pytest.mark.parametrize("problem", ["missing_dataset", "unknown_instrument", "missing_mask", "mixed_sizes", "small"])
def test_endovis2017_bad_input(src2017, tmp_path, problem):
    root = src2017 / "instrument_dataset_4"
    if problem == "missing_dataset":
        bad = src2017 / "instrument_dataset_8"
        for p in sorted(bad.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
        bad.rmdir()
        match, error = rf"{bad}: missing instrument_dataset_8 folder", FileNotFoundError
    elif problem == "unknown_instrument":
        bad = root / "ground_truth" / "Mystery_Tool_labels"
        (root / "ground_truth" / "Left_Prograsp_Forceps_labels").rename(bad)
        match, error = rf"{bad}: instrument folder name matches none", ValueError
    elif problem == "missing_mask":
        bad = root / "ground_truth" / "Left_Prograsp_Forceps_labels" / "frame001.png"
        bad.unlink()
        match, error = rf"{bad}: missing mask", FileNotFoundError
    elif problem == "mixed_sizes":
        bad = root / "left_frames" / "frame001.png"
        _save(bad, _frame(0, 11, 14))
        match, error = rf"{bad}: frame is 11x14 .*mixed sizes", ValueError
    else:
        bad = root / "left_frames" / "frame000.png"
        for name in ("frame000.png", "frame001.png"):
            _save(root / "left_frames" / name, _frame(0, 8, 14))
            _save(root / "ground_truth" / "Left_Prograsp_Forceps_labels" / name, np.zeros((8, 14), np.uint8))
        match, error = rf"{bad}: 8x14 is smaller than the crop box rows 1..8, columns 2..11", ValueError
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        convert_endovis2017(src2017, out, crop=CROP)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_check_class_map():
    mask = np.array([[0, 1], [7, 3]], np.uint8)
    assert check_class_map(mask, 7, "m.png") is mask
    with pytest.raises(ValueError, match=r"m.png: class ids \[8, 200\] outside the class list \(0 background, 1..7\)"):
        check_class_map(np.array([[8, 200, 1]], np.uint8), 7, "m.png")


# ------------------------------------------------------------------ synthetic scenes


def test_synthetic_surgical_dataset(tmp_path):
    root = make_synthetic_surgical_dataset(tmp_path / "a", sequences=4, frames=3, size=(64, 80), seed=5)
    again = make_synthetic_surgical_dataset(tmp_path / "b", sequences=4, frames=3, size=(64, 80), seed=5)
    other = make_synthetic_surgical_dataset(tmp_path / "c", sequences=4, frames=3, size=(64, 80), seed=6)
    content = json.loads((root / "datalist.json").read_text())
    assert content["classes"] == list(ENDOVIS2018_CLASSES)
    assert [i["sequence"] for i in content["validation"]] == ["seq_4"] * 3
    assert len(content["training"]) == 9 and content["training"][4]["frame"] == 1
    rel = [(i["image"], i["label"]) for i in content["training"] + content["validation"]]
    assert all((root / p).read_bytes() == (again / p).read_bytes() for pair in rel for p in pair)
    assert any((root / p).read_bytes() != (other / p).read_bytes() for p, _ in rel)
    colours, seen = {}, set()
    for image_rel, label_rel in rel:
        image, mask = np.asarray(Image.open(root / image_rel)), np.asarray(Image.open(root / label_rel))
        assert image.shape == (64, 80, 3) and image.dtype == np.uint8 and mask.shape == (64, 80)
        classes = set(np.unique(mask).tolist()) - {0}
        assert 1 <= len(classes) <= 3 and classes <= set(range(1, 8))
        seen |= classes
        for c in classes:
            colours.setdefault(c, []).append(image[mask == c].mean(axis=0))
        assert (mask > 0).mean() < 0.5  # instruments on tissue, not everywhere
        tissue = image[mask == 0].mean(axis=0)
        assert tissue[0] > tissue[1] + 40  # reddish background
    assert len(seen) >= 5
    means = {c: np.mean(v, axis=0) for c, v in colours.items()}
    for a in means:  # every class looks different from every other (mean RGB distance)
        for b in means:
            assert a == b or np.linalg.norm(means[a] - means[b]) > 20, (a, b, means[a], means[b])


def test_synthetic_surgical_cli_and_errors(tmp_path, capsys):
    synthetic_main(
        [str(tmp_path / "d"), "--sequences", "2", "--frames", "1", "--size", "32", "40", "--num-classes", "3"]
    )
    content = json.loads((tmp_path / "d" / "datalist.json").read_text())
    assert content["classes"] == list(ENDOVIS2018_CLASSES[:3]) and len(content["training"]) == 1
    assert str(tmp_path / "d") in capsys.readouterr().out
    with pytest.raises(ValueError, match="need >= 2 sequences"):
        make_synthetic_surgical_dataset(tmp_path / "e", sequences=1)
    with pytest.raises(FileExistsError):
        make_synthetic_surgical_dataset(tmp_path / "d")
