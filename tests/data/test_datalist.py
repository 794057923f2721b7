"""datalist_items: datalist sections with optional keys."""

from __future__ import annotations

import json

import pytest

from monaiseg.data.datalist import datalist_items


def test_datalist_items_with_optional_keys(tmp_path):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps({"training": [{"image": "a.png"}], "training_generic": [{"image": "g.png"}]}))
    items = datalist_items(path, tmp_path, ["training"], ["training_generic", "absent"])
    assert [i["image"] for i in items] == [str(tmp_path / "a.png"), str(tmp_path / "g.png")]
    with pytest.raises(ValueError, match="no 'videos' list"):
        datalist_items(path, tmp_path, ["videos"])
