"""Prompt transforms and prompt files on hand-made arrays (no model needed).

Conventions under test: SAM boxes are (x0, y0, x1, y1) with x = column, y = row; in volumes
(C, I, J, K) user prompts are voxel indices (i, j) on slice k, so [i0, j0, i1, j1] becomes
(x0, y0, x1, y1) = (j0, i0, j1, i1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from monai.data import MetaTensor, decollate_batch

from monaiseg.data.collate import collate_with_prompts
from monaiseg.prompts import (
    ObjectPrompt,
    ijk_to_xy,
    key_slice,
    mask_box,
    prompts_from_json,
    prompts_to_json,
    read_prompt_file,
)
from monaiseg.transforms.prompts import KeySlicePromptsd, LoadPromptsd, RandBoxPromptd

# --------------------------------------------------------------------------- mask_box / ijk_to_xy


def test_mask_box_is_tight_inclusive_xy():
    mask = np.zeros((6, 8), dtype=bool)
    mask[1:4, 2:6] = True  # rows 1..3, cols 2..5
    assert mask_box(mask) == (2, 1, 5, 3)
    mask[4, 7] = True  # a stray pixel widens the box to row 4, col 7
    assert mask_box(mask) == (2, 1, 7, 4)
    single = np.zeros((5, 5), dtype=np.uint8)
    single[0, 4] = 1  # row 0, column 4 -> x = 4, y = 0
    assert mask_box(single) == (4, 0, 4, 0)
    assert all(type(v) is int for v in mask_box(single))


def test_ijk_to_xy_swaps_axes():
    assert ijk_to_xy([2, 6, 4, 9]) == (6.0, 2.0, 9.0, 4.0)
    assert ijk_to_xy((7, 1)) == (1.0, 7.0)


# --------------------------------------------------------------------------- key_slice


def _volume_with_areas(areas: dict[int, int], depth: int = 8) -> np.ndarray:
    """(4, 4, depth) mask whose slice k holds areas[k] voxels."""
    mask = np.zeros((4, 4, depth), dtype=bool)
    for k, area in areas.items():
        mask.reshape(16, depth)[:area, k] = True
    return mask


@pytest.mark.parametrize(
    "areas, expected",
    [
        ({0: 1, 1: 3, 5: 9, 6: 2}, 5),  # unique largest
        ({2: 4, 3: 4, 4: 4}, 3),  # three-way tie, middle of 2..4 is 3
        ({1: 5, 2: 2, 3: 5, 4: 3, 5: 1}, 3),  # tie 1 vs 3, object spans 1..5 (middle 3)
        ({0: 6, 1: 6, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1, 7: 1}, 1),  # tie 0 vs 1, middle 3.5 -> 1
        ({4: 16}, 4),  # single slice
    ],
)
def test_key_slice_largest_area_tie_nearest_middle(areas, expected):
    assert key_slice(_volume_with_areas(areas)) == expected


def test_key_slice_equidistant_tie_picks_one_of_them():
    assert key_slice(_volume_with_areas({0: 4, 6: 4}, depth=7)) in (0, 6)


# --------------------------------------------------------------------------- RandBoxPromptd


def _two_object_label() -> torch.Tensor:
    label = torch.zeros(1, 64, 80)  # H = 64 rows, W = 80 columns
    label[0, 10:20, 30:50] = 1  # box (30, 10, 49, 19)
    label[0, 40:60, 5:15] = 2  # box (5, 40, 14, 59)
    return label


TRUE_BOX = {1: (30, 10, 49, 19), 2: (5, 40, 14, 59)}


def test_rand_box_prompt_chosen_object_mask_and_jittered_box():
    label = _two_object_label()
    t = RandBoxPromptd(keys="label", labels=[2], jitter=5.0, reference_size=256)
    max_shift = 5.0 * 80 / 256  # jitter at 256 scaled to the longest side (80): 1.5625 px
    for seed in range(10):
        t.set_random_state(seed)
        out = t({"label": label.clone(), "image": torch.zeros(1, 64, 80)})
        assert torch.equal(out["label"], (label == 2).float())  # binary mask of the chosen object
        assert out["label"].dtype == torch.float32
        box = out["box"]
        assert box.shape == (4,) and box.dtype == torch.float32
        assert (box - torch.tensor(TRUE_BOX[2], dtype=torch.float32)).abs().max() <= max_shift + 1e-5
        assert 0 <= box[0] <= box[2] <= 79 and 0 <= box[1] <= box[3] <= 63
    assert torch.equal(label, _two_object_label())  # input not modified in place


def test_rand_box_prompt_without_jitter_is_the_tight_box():
    out = RandBoxPromptd(labels=[1], jitter=0.0)({"label": _two_object_label()})
    assert out["box"].tolist() == [30.0, 10.0, 49.0, 19.0]


def test_rand_box_prompt_clips_to_the_image():
    label = torch.zeros(1, 20, 30)
    label[0, 0:5, 25:30] = 3  # touches the top and right borders: box (25, 0, 29, 4)
    t = RandBoxPromptd(jitter=20.0, reference_size=30)  # up to 20 px per side
    for seed in range(10):
        t.set_random_state(seed)
        x0, y0, x1, y1 = t({"label": label})["box"].tolist()
        assert 0 <= x0 <= x1 <= 29 and 0 <= y0 <= y1 <= 19
        assert abs(x0 - 25) <= 20 and abs(y1 - 4) <= 20


def test_rand_box_prompt_is_deterministic_with_seed():
    def run(seed):
        t = RandBoxPromptd(jitter=5.0)
        t.set_random_state(seed)
        outs = [t({"label": _two_object_label()}) for _ in range(8)]
        return [(o["label"].nonzero()[0].tolist(), tuple(o["box"].tolist())) for o in outs]

    first = run(7)
    assert run(7) == first
    assert run(8) != first


def test_rand_box_prompt_picks_each_object_sometimes():
    t = RandBoxPromptd(jitter=0.0)
    t.set_random_state(0)
    boxes = {tuple(t({"label": _two_object_label()})["box"].tolist()) for _ in range(20)}
    assert boxes == {tuple(map(float, TRUE_BOX[1])), tuple(map(float, TRUE_BOX[2]))}


def test_rand_box_prompt_empty_label_names_the_file():
    label = MetaTensor(torch.zeros(1, 16, 16), meta={"filename_or_obj": "/data/case_007_label.nii.gz"})
    with pytest.raises(ValueError, match=r"/data/case_007_label\.nii\.gz.*empty"):
        RandBoxPromptd()({"label": label})
    # a label with objects, none of the requested ones
    other = MetaTensor(_two_object_label(), meta={"filename_or_obj": "/data/case_008_label.nii.gz"})
    with pytest.raises(ValueError, match=r"case_008_label"):
        RandBoxPromptd(labels=[3])({"label": other})


# --------------------------------------------------------------------------- KeySlicePromptsd


def _label_3d() -> MetaTensor:
    """(1, I=10, J=12, K=8) with two objects whose boxes are not symmetric in i/j."""
    label = torch.zeros(1, 10, 12, 8)
    label[0, 2:5, 6:10, 3] = 1  # slice 3: i 2..4, j 6..9 (area 12)
    label[0, 2:4, 6:8, 4] = 1  # slice 4: area 4
    label[0, 7:9, 1:3, 5:8] = 2  # slices 5, 6, 7: area 4 each -> middle slice 6
    return MetaTensor(label, meta={"filename_or_obj": "/data/ct_003_seg.nii.gz"})


def test_key_slice_prompts_per_object_with_ij_to_xy():
    out = KeySlicePromptsd(keys="label")({"label": _label_3d()})
    assert out["prompts"] == [
        ObjectPrompt(obj_id=1, frame=3, box=(6, 2, 9, 4)),  # [i0, j0, i1, j1] = [2, 6, 4, 9]
        ObjectPrompt(obj_id=2, frame=6, box=(1, 7, 2, 8)),  # [7, 1, 8, 2]
    ]
    for p in out["prompts"]:  # valid prompts for the model: x within J, y within I
        p.validate(num_frames=8, height=10, width=12)
    assert "label" in out and out["label"] is not None


def test_key_slice_prompts_selected_labels_and_missing():
    assert [p.obj_id for p in KeySlicePromptsd(labels=[2])({"label": _label_3d()})["prompts"]] == [2]
    with pytest.raises(ValueError, match=r"ct_003_seg\.nii\.gz.*\[3\]"):
        KeySlicePromptsd(labels=[1, 3])({"label": _label_3d()})
    out = KeySlicePromptsd(labels=[1, 3], allow_missing=True)({"label": _label_3d()})
    assert [p.obj_id for p in out["prompts"]] == [1]
    with pytest.raises(ValueError, match=r"ct_003_seg.*no object"):
        KeySlicePromptsd(labels=[3, 4], allow_missing=True)({"label": _label_3d()})
    with pytest.raises(ValueError, match=r"ct_003_seg.*no object"):
        KeySlicePromptsd()(
            {"label": MetaTensor(torch.zeros(1, 4, 4, 4), meta={"filename_or_obj": "ct_003_seg.nii.gz"})}
        )


def test_key_slice_prompts_need_3d_label():
    with pytest.raises(ValueError, match="3D label"):
        KeySlicePromptsd()({"label": torch.ones(1, 8, 8)})


# --------------------------------------------------------------------------- prompt files

SHAPE = (10, 12, 8)  # I, J, K


def _write(tmp_path, content, name="case.prompts.json"):
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_read_prompt_file_valid(tmp_path):
    path = _write(
        tmp_path,
        {
            "objects": [
                {"label": 1, "slice": 3, "box": [2, 6, 4, 9], "name": "liver"},
                {"label": 2, "slice": 6, "points": [[7, 1], [8, 2]], "point_labels": [1, 0]},
            ]
        },
    )
    assert read_prompt_file(path, SHAPE) == [
        ObjectPrompt(obj_id=1, frame=3, box=(6.0, 2.0, 9.0, 4.0)),
        ObjectPrompt(obj_id=2, frame=6, points=((1.0, 7.0), (2.0, 8.0)), point_labels=(1, 0)),
    ]
    # the same object as KeySlicePromptsd derives from the label: file and label conventions agree
    assert read_prompt_file(path, SHAPE)[0] == KeySlicePromptsd(labels=[1])({"label": _label_3d()})["prompts"][0]


def test_read_prompt_file_uses_ij_order(tmp_path):
    """j up to 29 is fine in a (10, 30, 8) volume; read as x it would be inside, read as y it would not."""
    path = _write(tmp_path, {"objects": [{"label": 1, "slice": 0, "box": [2, 20, 4, 25]}]})
    assert read_prompt_file(path, (10, 30, 8))[0].box == (20.0, 2.0, 25.0, 4.0)
    with pytest.raises(ValueError):
        read_prompt_file(path, (30, 10, 8))  # j = 20..25 outside J = 10


@pytest.mark.parametrize(
    "content, match",
    [
        ({"objects": [{"label": 1, "slice": 3, "box": [2, 6, 4, 12]}]}, r"object #0.*outside"),  # j1 = 12 = J
        ({"objects": [{"label": 1, "slice": 3, "box": [2, 6, 10, 9]}]}, r"object #0.*outside"),  # i1 = 10 = I
        ({"objects": [{"label": 1, "slice": 3, "box": [4, 6, 2, 9]}]}, r"object #0"),  # i1 < i0
        (
            {"objects": [{"label": 1, "slice": 2, "box": [2, 6, 4, 9]}, {"label": 2, "slice": 8, "box": [0, 0, 1, 1]}]},
            r"object #1.*key slice 8 is outside the volume \(0\.\.7\)",
        ),
        ({"objects": [{"label": 1, "slice": -1, "box": [0, 0, 1, 1]}]}, r"object #0.*slice -1"),
        ({"objects": [{"label": 1, "slice": 2, "points": [[11, 0]], "point_labels": [1]}]}, r"object #0.*point"),
        ({"objects": [{"label": 1, "slice": 2, "points": [[1, 0]]}]}, r"object #0.*label"),
        ({"objects": [{"label": 1, "slice": 2}]}, r"object #0.*box, points or a mask"),
        ({"objects": [{"slice": 2, "box": [0, 0, 1, 1]}]}, r"object #0.*label"),
        ({"objects": [{"label": 0, "slice": 2, "box": [0, 0, 1, 1]}]}, r"object #0.*positive"),
        ({"objects": []}, r"lists no objects"),
        ({"boxes": []}, r"'objects' list"),
        ([{"label": 1}], r"'objects' list"),
        ('{"objects": [{"label": 1, "slice": 3, "box": [2, 6, 4, 9]}', r"not a JSON object"),  # truncated
        ("", r"not a JSON object"),
    ],
)
def test_read_prompt_file_errors_name_the_file(tmp_path, content, match):
    path = _write(tmp_path, content)
    with pytest.raises(ValueError, match=match) as info:
        read_prompt_file(path, SHAPE)
    assert str(path) in str(info.value)


def test_read_prompt_file_missing(tmp_path):
    path = tmp_path / "nowhere" / "case.json"
    with pytest.raises(FileNotFoundError) as info:
        read_prompt_file(path, SHAPE)
    assert str(path) in str(info.value)


def test_load_promptsd_checks_against_image_shape(tmp_path):
    path = _write(tmp_path, {"objects": [{"label": 1, "slice": 7, "box": [2, 6, 4, 9]}]})
    out = LoadPromptsd(keys="prompts", image_key="image")({"image": torch.zeros(1, *SHAPE), "prompts": str(path)})
    assert out["prompts"] == [ObjectPrompt(obj_id=1, frame=7, box=(6.0, 2.0, 9.0, 4.0))]
    with pytest.raises(ValueError, match=r"slice 7 is outside"):
        LoadPromptsd()({"image": torch.zeros(1, 10, 12, 7), "prompts": str(path)})


# --------------------------------------------------------------------------- JSON and collation


def _prompts_with_mask() -> list[ObjectPrompt]:
    mask = np.zeros((5, 6), dtype=bool)
    mask[1:3, 2:5] = True
    return [
        ObjectPrompt(obj_id=1, frame=3, box=(6.0, 2.0, 9.0, 4.0)),
        ObjectPrompt(obj_id=2, frame=0, points=((1.0, 7.0), (2.5, 8.0)), point_labels=(1, 0)),
        ObjectPrompt(obj_id=5, frame=4, mask=mask),
    ]


def test_prompts_json_round_trip_with_mask():
    prompts = _prompts_with_mask()
    text = prompts_to_json(prompts)
    raw = json.loads(text)
    assert raw[0] == {"obj_id": 1, "frame": 3, "box": [6.0, 2.0, 9.0, 4.0]}  # None fields omitted
    assert raw[2]["mask"][1] == [0, 0, 1, 1, 1, 0]
    back = prompts_from_json(text)
    assert back == prompts  # mask is compare=False: checked below
    assert back[0].box == (6.0, 2.0, 9.0, 4.0) and isinstance(back[1].points[0], tuple)
    assert back[2].mask.dtype == bool and np.array_equal(back[2].mask, prompts[2].mask)
    assert back[0].mask is None and back[2].box is None
    assert prompts_to_json(back) == text
    assert prompts_from_json(prompts_to_json([])) == []


def test_collate_and_decollate_keep_prompts():
    prompts = _prompts_with_mask()
    items = [
        {
            "image": MetaTensor(torch.full((1, 5, 6, 5), float(n)), meta={"filename_or_obj": f"case{n}.nii.gz"}),
            "prompts": prompts[n : n + 2],
        }
        for n in range(2)
    ]
    batch = collate_with_prompts(items)
    assert batch["image"].shape == (2, 1, 5, 6, 5)
    assert batch["prompts"] == [prompts_to_json(prompts[0:2]), prompts_to_json(prompts[1:3])]
    assert list(batch["image"].meta["filename_or_obj"]) == ["case0.nii.gz", "case1.nii.gz"]
    cases = decollate_batch(batch)
    assert len(cases) == 2
    for n, case in enumerate(cases):
        assert isinstance(case["prompts"], str)
        got = prompts_from_json(case["prompts"])
        assert got == prompts[n : n + 2]
        assert case["image"].meta["filename_or_obj"] == f"case{n}.nii.gz"
        assert float(case["image"].mean()) == n
    mask_prompt = prompts_from_json(cases[1]["prompts"])[1]
    assert np.array_equal(mask_prompt.mask, prompts[2].mask)


def test_collate_without_prompts_key():
    batch = collate_with_prompts([{"image": torch.zeros(1, 2, 2)}, {"image": torch.ones(1, 2, 2)}])
    assert set(batch) == {"image"} and batch["image"].shape == (2, 1, 2, 2)


def test_batch_prompt_lists_decodes_json_and_checks_the_count():
    from monaiseg.prompts import batch_prompt_lists

    first = [ObjectPrompt(obj_id=1, frame=0, box=(1.0, 2.0, 3.0, 4.0))]
    second = [ObjectPrompt(obj_id=2, frame=1, points=((5.0, 6.0),), point_labels=(1,))]
    assert batch_prompt_lists([first, prompts_to_json(second)], 2) == [first, second]
    with pytest.raises(ValueError, match="got 1 prompt lists for a batch of 2 volumes"):
        batch_prompt_lists([first], 2)
