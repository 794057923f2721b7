"""monaiseg.data.required_split: a split a workflow needs is read as MONAI reads it, or refused naming the datalist."""

from __future__ import annotations

import json

import pytest

from monaiseg.data.required_split import load_required_split


def write(tmp_path, content) -> str:
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(content) if not isinstance(content, str) else content)
    return str(path)


def test_items_resolved_against_the_base_dir(tmp_path):
    path = write(tmp_path, {"training": [{"image": "images/a.png", "label": "labels/a.png"}], "validation": []})
    items = load_required_split(path, "training", tmp_path / "data")
    assert items == [
        {"image": str(tmp_path / "data" / "images/a.png"), "label": str(tmp_path / "data" / "labels/a.png")}
    ]


@pytest.mark.parametrize(
    "content, words",
    [
        ({"training": [], "validation": [{"image": "a.png"}]}, "the 'training' split of the datalist is empty"),
        ({"validation": [{"image": "a.png"}]}, "no 'training' list (found ['validation'])"),
        ("{not json", "datalist is not JSON"),
    ],
)
def test_empty_missing_or_unreadable_split_names_the_file(tmp_path, content, words):
    path = write(tmp_path, content)
    with pytest.raises(ValueError) as info:
        load_required_split(path, "training", tmp_path)
    assert str(info.value).startswith(path) and words in str(info.value)


def test_missing_datalist(tmp_path):
    with pytest.raises(FileNotFoundError, match="datalist not found"):
        load_required_split(tmp_path / "none.json", "training", tmp_path)
