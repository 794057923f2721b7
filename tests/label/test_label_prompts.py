"""Request prompts (3D Slicer / OHIF conventions) -> checked objects -> our inferers' inputs; the CLI command."""

from __future__ import annotations

import json

import pytest

from monaiseg.cli import parser, server_command
from monaiseg.label.prompts import box_rows, object_prompts, parse_objects, viewer_objects_json
from monaiseg.label.runtime import RequestError

LABELS = {"liver": 1, "spleen": 3}


def test_slicer_points_and_roi_become_xy_prompts_on_their_slices():
    params = {"foreground": [[10, 20, 4]], "background": [[1, 2, 4]], "roi": [5, 6, 15, 26, 6, 9], "label": "spleen"}
    objects = parse_objects(params, (32, 40, 12), LABELS)
    assert len(objects) == 1 and objects[0].value == 3 and sorted(objects[0].slices) == [4, 7]
    prompts = object_prompts(objects)
    assert [(p.frame, p.obj_id) for p in prompts] == [(4, 3), (7, 3)]
    assert prompts[0].points == ((20.0, 10.0), (2.0, 1.0)) and prompts[0].point_labels == (1, 0)
    assert prompts[1].box == (6.0, 5.0, 26.0, 15.0)  # (x0, y0, x1, y1) of slice [..., k]: x along J


def test_ohif_slice_form_equals_ijk_form():
    a = parse_objects({"foreground": [[3, 4]], "slice": 2}, (10, 10, 5), LABELS)
    b = parse_objects({"foreground": [[3, 4, 2]]}, (10, 10, 5), LABELS)
    assert object_prompts(a) == object_prompts(b)


def test_several_objects_and_2d_forms():
    params = {"objects": [{"label": "liver", "roi": [1, 2, 5, 6]}, {"label": 3, "foreground": [[4, 4]]}]}
    objects = parse_objects(params, (8, 9), LABELS)
    items = json.loads(viewer_objects_json(objects))
    assert items == [
        {"label": 1, "box": [1.0, 2.0, 5.0, 6.0], "points": None, "point_labels": None},
        {"label": 3, "box": None, "points": [[4.0, 4.0]], "point_labels": [1]},
    ]
    assert box_rows(objects[:1]).tolist() == [[2.0, 1.0, 6.0, 5.0]]


def test_entries_of_one_label_on_other_slices_are_one_object_with_several_key_slices():
    params = {"objects": [{"label": "spleen", "roi": [1, 2, 5, 6, 3, 3]}, {"label": 3, "foreground": [[4, 4, 7]]}]}
    objects = parse_objects(params, (8, 9, 10), LABELS)
    assert len(objects) == 1 and objects[0].value == 3 and sorted(objects[0].slices) == [3, 7]
    assert [(p.obj_id, p.frame) for p in object_prompts(objects)] == [(3, 3), (3, 7)]


@pytest.mark.parametrize(
    "params, shape, words",
    [
        ({"foreground": [[10, 2]]}, (8, 9), "outside the image"),
        ({"foreground": [[1, 2, 5]]}, (8, 9, 5), "axis k"),
        ({"roi": [1, 2, 9, 3]}, (8, 9), "outside the image"),
        ({"roi": [5, 2, 1, 3]}, (8, 9), "i0 <= i1"),
        ({"foreground": [[1, 2]]}, (8, 9, 5), "needs k"),
        ({}, (8, 9), "no prompt"),
        ({"objects": [{"label": "kidney", "foreground": [[1, 1]]}]}, (8, 9), "unknown label"),
        ({"foreground": [[1, 2, 1]]}, (8, 9), "2D image"),
        (
            {"objects": [{"label": 3, "foreground": [[1, 1, 2]]}, {"label": "spleen", "roi": [0, 0, 3, 3, 2, 2]}]},
            (8, 9, 5),
            "twice on slice 2",
        ),
    ],
)
def test_bad_prompts_raise_one_clear_error(params, shape, words):
    with pytest.raises(RequestError, match=words):
        parse_objects(params, shape, LABELS)


def test_serve_command_is_loopback_monailabel_with_app_folder(tmp_path):
    args = parser().parse_args(
        [
            "label",
            "serve",
            "--studies",
            str(tmp_path / "s"),
            "--bundles",
            "bundles/medsam2",
            "--overrides",
            "medsam2:tiny.json",
        ]
    )
    cmd = server_command(args)
    assert cmd[1:4] == ["-m", "monailabel.main", "start_server"]
    assert cmd[cmd.index("--host") + 1] == "127.0.0.1" and cmd[cmd.index("-p") + 1] == "8000"
    app = tmp_path / "s" / ".monaiseg-label-app" / "main.py"
    assert "MonaisegApp" in app.read_text() and cmd[cmd.index("--app") + 1] == str(app.parent)
    conf = {cmd[i + 1]: cmd[i + 2] for i, a in enumerate(cmd) if a == "--conf"}
    assert conf["overrides"] == "medsam2:tiny.json" and conf["bundles"].endswith("medsam2")
    assert (float(conf["cache_mib"]), int(conf["max_sessions"]), float(conf["session_idle_s"])) == (1024, 8, 1800)
