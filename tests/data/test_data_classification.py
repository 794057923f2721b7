"""Classification datalists: class folders, CSV, WBC labels, stratified split and clear errors."""

from __future__ import annotations

import json
import shutil
from collections import Counter

import pytest
from conftest import SHARED

from monaiseg.data.classification import (
    csv_items,
    folder_items,
    image_items,
    load_classification_datalist,
    main,
    stratified_split,
    wbc_items,
    write_classification_datalist,
)

WBC = SHARED / "data" / "wbc_cellavision"


def test_class_folders(synthetic_classification):
    items, classes = folder_items(synthetic_classification)
    assert classes == ["disc", "ring", "square"]
    assert len(items) == 12 and Counter(i["label"] for i in items) == {0: 4, 1: 4, 2: 4}
    assert items[0] == {"image": "disc/img_000.png", "label": 0}
    items, classes = folder_items(synthetic_classification, ["square", "disc"])  # given order, a subset
    assert classes == ["square", "disc"] and items[0] == {"image": "square/img_000.png", "label": 0}
    assert {i["image"].split("/")[0] for i in items if i["label"] == 1} == {"disc"}


def copy_tree(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.json", "*.csv"))
    return dst


def test_class_folder_errors(synthetic_classification, tmp_path):
    root = copy_tree(synthetic_classification, tmp_path / "shapes")
    (root / "empty").mkdir()
    (root / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"empty: class folder 'empty' holds no image"):
        folder_items(root)
    with pytest.raises(FileNotFoundError, match=r"oval: class folder not found"):
        folder_items(root, ["disc", "oval"])
    (root / "empty" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"broken\.png: unreadable image"):
        folder_items(root)


def test_csv_labels(synthetic_classification, tmp_path):
    items, classes = csv_items(synthetic_classification / "labels.csv")
    assert classes == ["disc", "ring", "square"] and items == folder_items(synthetic_classification)[0]
    table = tmp_path / "indices.csv"
    table.write_text("image,label\nring/img_000.png,1\ndisc/img_001.png,0\n")
    items, classes = csv_items(table, synthetic_classification, ["disc", "ring"])
    assert classes == ["disc", "ring"] and [i["label"] for i in items] == [1, 0]
    assert csv_items(table, synthetic_classification)[1] == ["0", "1"]  # integer labels, no names given


@pytest.mark.parametrize(
    "rows, message",
    [
        ("ring/img_000.png,ring\ndisc/img_000.png,oval\n", r"bad\.csv, line 3: unknown class 'oval'"),
        (
            "ring/img_000.png,ring\nring/img_099.png,ring\n",
            r"bad\.csv: 1 image\(s\) named in it do not exist: 'ring/img_099.png' \(line 3\)",
        ),
        ("ring/img_000.png,7\n", r"bad\.csv, line 2: unknown class '7'"),
    ],
)
def test_csv_errors(synthetic_classification, tmp_path, rows, message):
    table = tmp_path / "bad.csv"
    table.write_text("image,label\n" + rows)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        csv_items(table, synthetic_classification, ["disc", "ring", "square"])
    table.write_text("path,class\nx.png,disc\n")
    with pytest.raises(ValueError, match="columns 'image' and 'label'"):
        csv_items(table, synthetic_classification)


def test_stratified_split_is_fixed_and_complete(synthetic_classification):
    items, _ = folder_items(synthetic_classification)
    splits = stratified_split(items, (0.5, 0.25, 0.25), seed=3)
    assert splits == stratified_split(items, (0.5, 0.25, 0.25), seed=3)
    assert {k: Counter(i["label"] for i in v) for k, v in splits.items()} == {
        "training": {0: 2, 1: 2, 2: 2},
        "validation": {0: 1, 1: 1, 2: 1},
        "testing": {0: 1, 1: 1, 2: 1},
    }
    chosen = [i["image"] for v in splits.values() for i in v]
    assert sorted(chosen) == sorted(i["image"] for i in items)  # disjoint and complete
    assert splits != stratified_split(items, (0.5, 0.25, 0.25), seed=4)


def test_datalist_round_trip_and_class_check(synthetic_classification, tmp_path):
    items, classes = folder_items(synthetic_classification)
    path = write_classification_datalist(tmp_path / "datalist.json", items, classes, (0.5, 0.25, 0.25))
    content = json.loads(path.read_text())
    assert content["labels"] == {"0": "disc", "1": "ring", "2": "square"}
    loaded = load_classification_datalist(path, synthetic_classification, "testing", classes)
    assert len(loaded) == 3 and all((synthetic_classification / i["image"]).is_file() for i in loaded)
    with pytest.raises(ValueError, match=r"differ from the bundle's class_names \['a', 'b', 'c'\]"):
        load_classification_datalist(path, synthetic_classification, "testing", ["a", "b", "c"])
    content.pop("labels")
    content["testing"][0]["label"] = 5
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"has label 5, expected a class index 0..2"):
        load_classification_datalist(path, synthetic_classification, "testing", classes)


def test_image_items(synthetic_classification, tmp_path):
    assert len(image_items(synthetic_classification / "ring")) == 4
    one = synthetic_classification / "ring" / "img_001.png"
    assert image_items(one) == [{"image": str(one)}]
    with pytest.raises(ValueError, match="folder holds no image"):
        image_items(tmp_path)


def test_cli_writes_datalist(synthetic_classification, tmp_path):
    out = tmp_path / "dl.json"
    main(["--root", str(synthetic_classification), "--out", str(out), "--fractions", "0.5", "0.25", "0.25"])
    assert sum(len(json.loads(out.read_text())[k]) for k in ("training", "validation", "testing")) == 12


@pytest.mark.skipif(not WBC.is_dir(), reason="../shared/data/wbc_cellavision not present")
def test_wbc_classification_datalist(tmp_path):
    items, classes = wbc_items(WBC)
    assert classes == ["neutrophil", "lymphocyte", "monocyte", "eosinophil", "basophil"]
    assert len(items) == 100 and items[0] == {"image": "001.bmp", "label": 1}  # 001: lymphocyte (class 2)
    assert Counter(i["label"] for i in items) == {0: 33, 1: 37, 2: 15, 3: 12, 4: 3}
    path = write_classification_datalist(tmp_path / "wbc.json", items, classes)
    splits = {k: Counter(i["label"] for i in v) for k, v in json.loads(path.read_text()).items() if k != "labels"}
    assert all(splits[k][4] == 1 for k in ("training", "validation", "testing"))  # 3 basophils: one per split
