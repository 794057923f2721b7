"""SAM-Med2D data layout converter (monaiseg.data.sa_med2d) on small fake trees in both layouts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monaiseg.data.sa_med2d import main, mask_class, prepare_sa_med2d


def box_mask(shape, rows, cols, value=255) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = value
    return mask


def demo_tree(tmp_path: Path) -> Path:
    """data_demo layout: paths in the JSON start with the folder name; masks <stem>_<class>_<NNN>.png."""
    root = tmp_path / "data_demo"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    train, test = {}, {}
    for i in range(4):
        stem = f"amos_{i:04d}_75"
        Image.fromarray(np.full((20, 30), 40 + i, np.uint8)).save(root / "images" / f"{stem}.png")
        masks = {
            "liver_000": box_mask((20, 30), (2, 8), (2, 10)),
            "aorta_000": box_mask((20, 30), (10, 14), (20, 24), 1),
            "liver_001": box_mask((20, 30), (15, 18), (2, 5)),
        }
        for name, mask in masks.items():
            Image.fromarray(mask).save(root / "masks" / f"{stem}_{name}.png")
        paths = [f"data_demo/masks/{stem}_{name}.png" for name in masks]
        if i < 3:
            train[f"data_demo/images/{stem}.png"] = paths
        else:
            test.update(dict.fromkeys(paths, f"data_demo/images/{stem}.png"))
    (root / "image2label_train.json").write_text(json.dumps(train))
    (root / "label2image_test.json").write_text(json.dumps(test))
    return root


def test_demo_layout_to_class_maps_and_datalist(tmp_path):
    datalist = prepare_sa_med2d(demo_tree(tmp_path), tmp_path / "out", splits=(2 / 3, 1 / 3))
    content = json.loads(datalist.read_text())
    assert content["labels"] == {"1": "aorta", "2": "liver"}
    assert (len(content["training"]), len(content["validation"]), len(content["testing"])) == (2, 1, 1)
    assert (
        content["testing"][0]["image"].endswith("amos_0003_75.png")
        and Path(content["testing"][0]["image"]).is_absolute()
    )
    label = np.asarray(Image.open(tmp_path / "out" / content["testing"][0]["label"]))
    assert label.dtype == np.uint8 and label.shape == (20, 30)
    assert (label[2:8, 2:10] == 2).all() and (label[15:18, 2:5] == 2).all() and (label[10:14, 20:24] == 1).all()
    assert (label > 0).sum() == 6 * 8 + 3 * 3 + 4 * 4


def test_release_layout_with_class_mapping(tmp_path):
    root = tmp_path / "SAMed2Dv1"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    mapping = {}
    for i in range(3):
        stem = f"ct_00--AbdomenCT1K--Case_{i:05d}--x_0040"
        Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(root / "images" / f"{stem}.png")
        Image.fromarray(box_mask((16, 16), (1, 5), (1, 5))).save(root / "masks" / f"{stem}--0003_000.png")
        Image.fromarray(box_mask((16, 16), (3, 9), (3, 9))).save(root / "masks" / f"{stem}--0007_000.png")  # overlaps
        mapping[f"images/{stem}.png"] = [f"masks/{stem}--0003_000.png", f"masks/{stem}--0007_000.png"]
    (root / "SAMed2D_v1.json").write_text(json.dumps(mapping))
    (root / "SAMed2D_v1_class_mapping_id.json").write_text(json.dumps({"AbdomenCT1K": {"3": "kidney"}}))
    content = json.loads(prepare_sa_med2d(root, tmp_path / "out", splits=(0.4, 0.3, 0.3)).read_text())
    assert content["labels"] == {"1": "AbdomenCT1K:0007", "2": "kidney"}
    label = np.asarray(Image.open(tmp_path / "out" / content["training"][0]["label"]))
    assert label[1, 1] == 2 and label[4, 4] == 1 and label[8, 8] == 1 and label[12, 12] == 0  # the later mask wins


def test_mask_class_names():
    assert mask_class("data_demo/images/s0114_111.png", "masks/s0114_111_rib_left_9_000.png") == "rib_left_9"
    assert mask_class("images/a--B--c.png", "masks/a--B--c--0012_001.png", {"B": {"kidney": "0012"}}) == "kidney"
    with pytest.raises(ValueError, match="other.png"):
        mask_class("images/a.png", "masks/other.png")


def test_bad_inputs_name_the_file_and_leave_nothing(tmp_path):
    root = demo_tree(tmp_path)
    bad = root / "masks" / "amos_0001_75_liver_000.png"
    Image.fromarray(np.arange(600, dtype=np.uint8).reshape(20, 30)).save(bad)
    with pytest.raises(ValueError, match="amos_0001_75_liver_000.png.*not a binary mask"):
        prepare_sa_med2d(root, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    (root / "image2label_train.json").unlink()
    with pytest.raises(FileNotFoundError, match="image2label_train.json"):
        prepare_sa_med2d(root, tmp_path / "out")


def test_cli(tmp_path, capsys):
    """The CLI of scripts/prepare_sa_med2d.py."""
    main(["--src", str(demo_tree(tmp_path)), "--out", str(tmp_path / "out"), "--val", "0.34"])
    out = capsys.readouterr().out
    assert "training: 2 images" in out and "testing: 1 images" in out and "classes: 2" in out
    with pytest.raises(SystemExit):
        main(["--src", str(tmp_path / "missing"), "--out", str(tmp_path / "out2")])
