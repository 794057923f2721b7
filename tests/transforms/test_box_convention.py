"""The one box convention (`monaiseg.prompts.check_box`: inclusive pixel coordinates, as the LiteMedSAM
challenge's boxes) and its consumers: prompt files with 1-pixel boxes and several objects of one label, the
2D instance numbering of `LoadBoxesd` and its inverse `InstanceLabelsd`, and the per-case prompt reading of
`ReadObjectPromptsd`, on hand-made arrays."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monaiseg.prompts import ObjectPrompt, box_size, check_box, mask_box, read_object_prompts
from monaiseg.transforms import InstanceLabelsd, LoadBoxesd, ReadObjectPromptsd


def test_one_pixel_thin_box_is_valid_and_its_size_counts_both_ends():
    assert check_box([237, 199, 254, 199], 300, 300) == (237.0, 199.0, 254.0, 199.0)
    assert box_size([237, 199, 254, 199]) == (18, 1)
    assert box_size([5, 5, 5, 5]) == (1, 1)  # one pixel
    assert check_box([0, 0, 299, 299], 300, 300) == (0, 0, 299, 299)  # the whole image


def test_mask_box_follows_the_convention():
    """The tight box of a mask (what the challenge's .npz boxes are) is a valid box of that size."""
    mask = np.zeros((6, 9), bool)
    mask[2, 3:7] = True  # one row, 4 columns
    box = mask_box(mask)
    assert box == (3, 2, 6, 2) and box_size(box) == (4, 1) and check_box(box, 9, 6) == box


@pytest.mark.parametrize(
    "box, words",
    [
        ([10, 5, 4, 8], "reversed"),
        ([1, 9, 4, 8], "reversed"),
        ([-1, 0, 4, 4], "outside the 20x10 image"),
        ([0, 0, 20, 4], "outside the 20x10 image"),  # x1 = width
        ([0, 0, 4, 10], "outside the 20x10 image"),  # y1 = height
        ([1, 2, 3], r"not \[x0, y0, x1, y1\]"),
    ],
)
def test_refused_only_when_reversed_or_outside(box, words):
    with pytest.raises(ValueError, match=words):
        check_box(box, 20, 10)


def test_object_prompt_validate_uses_the_convention():
    ObjectPrompt(obj_id=1, frame=0, box=(3.0, 4.0, 3.0, 9.0)).validate(1, 10, 20)
    with pytest.raises(ValueError, match="object 2: box .* is reversed"):
        ObjectPrompt(obj_id=2, frame=0, box=(3.0, 4.0, 2.0, 9.0)).validate(1, 10, 20)


def test_prompt_file_objects_may_share_a_label(tmp_path):
    path = tmp_path / "p.json"
    objects = [{"label": 1, "box": [0, 0, 5, 0]}, {"label": 1, "box": [7, 7, 9, 9]}, {"label": 2, "points": [[3, 3]]}]
    path.write_text(json.dumps({"objects": objects}))
    read = read_object_prompts(path, width=10, height=10)
    assert [(o["label"], o["box"]) for o in read] == [(1, [0, 0, 5, 0]), (1, [7, 7, 9, 9]), (2, None)]


def test_load_boxes_numbers_instances_and_instance_labels_maps_them_back(tmp_path):
    """Sidecar objects labelled 2, 3, 1, 1 -> instances 1..4 (x and y swapped to the (C, X, Y) array), their labels
    as JSON; an instance map -> the label map, the instances kept, metadata kept."""
    path = tmp_path / "p.json"
    boxes = [[0, 0, 8, 6], [2, 2, 4, 4], [1, 7, 6, 7], [9, 0, 9, 5]]
    path.write_text(json.dumps({"objects": [{"label": v, "box": b} for v, b in zip([2, 3, 1, 1], boxes)]}))
    d = LoadBoxesd(keys="prompts")({"image": MetaTensor(torch.zeros(1, 10, 8)), "prompts": str(path)})
    assert [p.obj_id for p in d["prompts"]] == [1, 2, 3, 4]
    assert [p.box for p in d["prompts"]] == [(y0, x0, y1, x1) for x0, y0, x1, y1 in boxes]
    assert json.loads(d["object_labels"]) == [2, 3, 1, 1]

    instances = MetaTensor(torch.tensor([[[0, 1, 2], [3, 4, 1]]], dtype=torch.float32), meta={"filename_or_obj": "x"})
    out = InstanceLabelsd()({"pred": instances, "object_labels": d["object_labels"]})
    assert out["pred"].tolist() == [[[0, 2, 3], [1, 1, 2]]]
    assert out["instances"].tolist() == instances.tolist() and out["pred"].meta["filename_or_obj"] == "x"
    assert InstanceLabelsd()({"pred": instances})["pred"].tolist() == instances.tolist()  # instances are labels


def test_load_boxes_refuses_a_reversed_box_naming_the_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"objects": [{"label": 1, "box": [5, 1, 2, 3]}]}))
    with pytest.raises(ValueError, match=f"{path}, object #0: box .* is reversed"):
        LoadBoxesd(keys="prompts")({"image": torch.zeros(1, 10, 8), "prompts": str(path)})


def test_read_object_prompts_transform_reads_the_sidecar_against_the_loaded_image(tmp_path):
    """The image is loaded x first (C, X, Y) = (1, 12, 7): a box to x = 11 fits, y = 7 does not."""
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"objects": [{"label": 4, "box": [0, 6, 11, 6]}]}))
    d = ReadObjectPromptsd()({"image": torch.zeros(1, 12, 7), "prompt_file": str(path)})
    assert "prompt_file" not in d and json.loads(d["prompts"])[0]["box"] == [0, 6, 11, 6]
    path.write_text(json.dumps({"objects": [{"label": 4, "box": [0, 6, 11, 7]}]}))
    with pytest.raises(ValueError, match=f"{path}.*outside the 12x7 image"):
        ReadObjectPromptsd()({"image": torch.zeros(1, 12, 7), "prompt_file": str(path)})


def test_challenge_npz_boxes_follow_the_convention(tmp_path):
    """A 1-pixel-thin challenge box is valid (segs for it are written as for any box); a reversed one is refused,
    naming the file."""
    from monaiseg.data.medsam_npz import check_challenge_npz

    path = tmp_path / "2D_case.npz"
    np.savez(path, imgs=np.zeros((20, 30, 3), np.uint8), boxes=np.array([[4, 7, 21, 7], [3, 2, 3, 19]]))
    shape, boxes = check_challenge_npz(path)
    assert shape == (20, 30, 3) and boxes.tolist() == [[4, 7, 21, 7], [3, 2, 3, 19]]
    np.savez(path, imgs=np.zeros((20, 30, 3), np.uint8), boxes=np.array([[9, 7, 4, 8]]))
    with pytest.raises(ValueError, match=f"{path}: box #0 .* is reversed"):
        check_challenge_npz(path)
