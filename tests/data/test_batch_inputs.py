"""batch_items: batch-inference inputs from a folder or a list, their sidecars, and the errors on bad input."""

from __future__ import annotations

import json

import pytest

from monaiseg.data.batch_inputs import batch_items, input_name

PROMPTS = {"prompts": "{name}_prompts.json", "prompt_label": "{name}_label{ext}"}


def touch(*paths):
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")


def test_input_name_as_save_imaged_names_outputs(tmp_path):
    (tmp_path / "frames").mkdir()
    assert input_name("a/ct01.nii.gz") == ("ct01", ".nii.gz")
    assert input_name("smear.v2.png") == ("smear.v2", ".png")
    assert input_name(tmp_path / "frames") == ("frames", "")


def test_folder_sorted_with_sidecars_and_sidecars_not_inputs(tmp_path):
    touch(tmp_path / "b.nii.gz", tmp_path / "a.nii.gz", tmp_path / "a_prompts.json", tmp_path / "b_label.nii.gz")
    touch(tmp_path / "notes.txt", tmp_path / ".hidden.nii.gz")
    items = batch_items(tmp_path, "*.nii.gz", sidecars=PROMPTS, require_sidecar=True)
    assert items == [
        {"image": str(tmp_path / "a.nii.gz"), "prompts": str(tmp_path / "a_prompts.json")},
        {"image": str(tmp_path / "b.nii.gz"), "prompt_label": str(tmp_path / "b_label.nii.gz")},
    ]


def test_recursive_pattern_and_optional_sidecar(tmp_path):
    touch(tmp_path / "x" / "s1.png", tmp_path / "y" / "s2.png", tmp_path / "y" / "s2_boxes.json")
    items = batch_items(tmp_path, "**/*.png", sidecars={"boxes": "{name}_boxes.json"})
    assert items == [
        {"image": str(tmp_path / "x" / "s1.png")},
        {"image": str(tmp_path / "y" / "s2.png"), "boxes": str(tmp_path / "y" / "s2_boxes.json")},
    ]


def test_list_forms(tmp_path):
    touch(tmp_path / "d" / "c.png", tmp_path / "d" / "a.png", tmp_path / "d" / "a_prompts.json")
    touch(tmp_path / "d" / "c_prompts.json", tmp_path / "d" / "own.json")
    paths = [str(tmp_path / "d" / "c.png"), str(tmp_path / "d" / "a.png")]
    expected = [{"image": p, "prompts": p[: -len(".png")] + "_prompts.json"} for p in paths]
    assert batch_items(input_list=paths, sidecars=PROMPTS, require_sidecar=True) == expected  # list order kept
    text = tmp_path / "d" / "inputs.txt"
    text.write_text("# two images\nc.png\n\na.png\n")  # relative to the .txt's folder
    assert batch_items(input_list=text, sidecars=PROMPTS) == expected
    listed = tmp_path / "d" / "list.json"
    listed.write_text(json.dumps(["c.png", "a.png"]))
    assert batch_items(input_list=str(listed), sidecars=PROMPTS) == expected
    datalist = tmp_path / "d" / "datalist.json"  # an item's own prompts win over its sidecar
    datalist.write_text(json.dumps({"test": [{"image": "c.png", "prompts": "own.json"}, {"image": "a.png"}]}))
    assert batch_items(input_list=datalist, sidecars=PROMPTS, datalist_key="test") == [
        {"image": paths[0], "prompts": str(tmp_path / "d" / "own.json")},
        expected[1],
    ]


@pytest.mark.parametrize(
    "case, error, message",
    [
        ("missing folder", FileNotFoundError, r"input_dir .*nowhere: no such folder"),
        ("empty folder", FileNotFoundError, r"no input in folder .*empty matches input_suffix '\*\.png'"),
        ("no match", FileNotFoundError, r"no input in folder .*imgs matches input_suffix '\*\.png'"),
        ("missing listed file", FileNotFoundError, r"input .*gone\.png \(listed in .*inputs\.txt\) not found"),
        ("missing sidecar", FileNotFoundError, r"b\.jpg: no prompts .*b_prompts\.json or .*b_label\.jpg"),
        ("missing own prompts", FileNotFoundError, r"a\.jpg: its prompts file .*lost\.json not found"),
        ("same names", ValueError, r"inputs .*imgs/a\.jpg and .*other/a\.jpg have the same name 'a'"),
        ("both", ValueError, r"either input_dir .* or input_list, not both"),
        ("list type", ValueError, r"inputs\.csv: give a list of paths, a \.txt file"),
        ("empty list", ValueError, r"inputs\.txt: lists no input"),
    ],
)
def test_bad_input_one_clear_error(tmp_path, case, error, message):
    imgs = tmp_path / "imgs"
    touch(imgs / "a.jpg", imgs / "a_prompts.json", imgs / "b.jpg", tmp_path / "other" / "a.jpg")
    (tmp_path / "empty").mkdir()
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"{imgs / 'a.jpg'}\n{tmp_path / 'gone.png'}\n" if case != "empty list" else "\n# none\n")
    (tmp_path / "inputs.csv").write_text("a.jpg\n")
    calls = {
        "missing folder": lambda: batch_items(tmp_path / "nowhere", "*.png"),
        "empty folder": lambda: batch_items(tmp_path / "empty", "*.png"),
        "no match": lambda: batch_items(imgs, "*.png"),
        "missing listed file": lambda: batch_items(input_list=listing),
        "missing sidecar": lambda: batch_items(imgs, "*.jpg", sidecars=PROMPTS, require_sidecar=True),
        "missing own prompts": lambda: batch_items(
            input_list=[{"image": str(imgs / "a.jpg"), "prompts": str(imgs / "lost.json")}], sidecars=PROMPTS
        ),
        "same names": lambda: batch_items(input_list=[imgs / "a.jpg", tmp_path / "other" / "a.jpg"]),
        "both": lambda: batch_items(imgs, "*.jpg", input_list=[imgs / "a.jpg"]),
        "list type": lambda: batch_items(input_list=str(tmp_path / "inputs.csv")),
        "empty list": lambda: batch_items(input_list=listing),
    }
    with pytest.raises(error, match=message):
        calls[case]()
