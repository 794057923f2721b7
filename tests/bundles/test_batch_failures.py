"""Batch inference that survives a bad case (`monaiseg.data.CaseDataset` + `monaiseg.handlers.CaseFailures`, named
in every bundle's inference.json): a folder of PNGs with sidecar prompt files, among them 1-pixel boxes, nested
objects, one class with several instances, a broken image, a bad prompt file and a box outside the image. Every
good case is written, each bad one is one row of `failures.csv`, the run exits non-zero with the counts;
`--fail_fast true` aborts on the first bad case. Under torchrun: test_batch_inference.py."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import REPO, error_chain
from PIL import Image

LITE_2D = [str(REPO / "bundles" / "lite_medsam" / "configs" / n) for n in ("inference.json", "images_2d.json")]


def write_folder(folder) -> None:
    """5 cases: two good ones (grey with a 1-pixel box, nested boxes and two instances of label 1; RGB with a
    1-pixel-thin column box), a broken PNG, a prompt file that is not JSON, a box outside the image."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 48), np.uint8)).save(folder / "a_grey.png")
    Image.fromarray(rng.integers(0, 255, (36, 44, 3), np.uint8)).save(folder / "b_rgb.png")
    Image.fromarray(rng.integers(0, 255, (32, 32), np.uint8)).save(folder / "d_badprompt.png")
    Image.fromarray(rng.integers(0, 255, (32, 32), np.uint8)).save(folder / "e_outside.png")
    (folder / "c_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    objects = {
        "a_grey": [
            {"label": 2, "box": [4, 4, 40, 30]},  # myocardium-like box ...
            {"label": 3, "box": [12, 10, 24, 20]},  # ... holding a cavity box
            {"label": 1, "box": [30, 33, 45, 33]},  # 16 x 1 px
            {"label": 1, "box": [2, 34, 10, 38]},  # a second instance of label 1
        ],
        "b_rgb": [{"label": 1, "box": [20, 3, 20, 30]}],  # 1 x 28 px
        "c_broken": [{"label": 1, "box": [2, 2, 9, 9]}],
        "e_outside": [{"label": 1, "box": [2, 2, 32, 9]}],  # x1 = 32 in a 32-pixel-wide image
    }
    for name, objs in objects.items():
        (folder / f"{name}_prompts.json").write_text(json.dumps({"objects": objs}))
    (folder / "d_badprompt_prompts.json").write_text('{"objects": [{"label": 1, "box": [1, 2,')


def read_failures(path) -> dict[str, dict]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {row["case"].rsplit("/", 1)[-1]: row for row in rows}


def batch_configs() -> list[str]:
    return [
        *LITE_2D,
        *(str(REPO / "bundles" / "lite_medsam" / "configs" / n) for n in ("batch_inference.json", "tiny.json")),
    ]


@pytest.mark.slow
def run_folder(tmp_path, **overrides):
    """lite_medsam's 2D batch inference (in process) of `tmp_path / "in"` into `tmp_path / "out"`."""
    from monaiseg.utils import run_bundle

    run_bundle(
        batch_configs(),
        in_process=True,
        bundle_root=tmp_path,
        output_dir=tmp_path / "out",
        input_dir=tmp_path / "in",
        **overrides,
    )


def test_folder_with_bad_cases_writes_the_good_ones_and_lists_the_bad(tmp_path):
    """lite_medsam 2D (tiny random network, in process, `output_objects`): 2 good cases -> label map, instance map
    and one mask per object each, in the image's shape; the label map is the instances' labels, each instance
    lies in its object's mask (masks keep overlaps: the map gives a pixel to one object); 3 bad cases ->
    failures.csv (case, stage, reason), exit 1."""
    write_folder(tmp_path / "in")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exited:
        run_folder(tmp_path, output_objects="true")
    assert str(exited.value) == f"3 of 5 cases failed; see {out / 'failures.csv'}"
    cases = {"a_grey": ((40, 48), [2, 3, 1, 1]), "b_rgb": ((36, 44), [1])}
    expected = [f"{n}_{kind}.png" for n in cases for kind in ("seg", "instances")]
    expected += [f"{n}_object{i + 1}.png" for n, (_, labels) in cases.items() for i in range(len(labels))]
    assert sorted(p.name for p in out.iterdir()) == sorted(["failures.csv", *expected])
    for name, (shape, labels) in cases.items():
        seg = np.asarray(Image.open(out / f"{name}_seg.png"))
        instances = np.asarray(Image.open(out / f"{name}_instances.png"))
        assert seg.shape == instances.shape == shape
        assert set(np.unique(instances)) <= set(range(len(labels) + 1))
        np.testing.assert_array_equal(seg, np.asarray([0, *labels])[instances])
        for i, label in enumerate(labels, start=1):
            mask = np.asarray(Image.open(out / f"{name}_object{i}.png"))
            assert mask.shape == shape and set(np.unique(mask)) <= {0, label}
            assert np.all(mask[instances == i] == label)  # the map's pixels of object i are in its mask
    failures = read_failures(out / "failures.csv")
    assert sorted(failures) == ["c_broken.png", "d_badprompt.png", "e_outside.png"]
    assert {row["stage"] for row in failures.values()} == {"load"}
    assert failures["c_broken.png"]["reason"] == "OSError: Truncated File Read"
    assert "d_badprompt_prompts.json: not a readable JSON" in failures["d_badprompt.png"]["reason"]
    assert "outside the 32x32 image" in failures["e_outside.png"]["reason"]
    assert all("\n" not in row["reason"] for row in failures.values())


@pytest.mark.slow
def test_fail_fast_aborts_on_the_first_bad_case(tmp_path):
    """`--fail_fast true`: the first bad case (c_broken, in name order) stops the run with its error, as without
    the guard; no failures.csv."""
    write_folder(tmp_path / "in")
    (tmp_path / "in" / "a_grey.png").unlink()
    (tmp_path / "in" / "b_rgb.png").unlink()
    with pytest.raises(Exception) as raised:
        run_folder(tmp_path, fail_fast="true")
    assert "Truncated File Read" in error_chain(raised.value)  # MONAI's error, as without the guard
    assert not (tmp_path / "out" / "failures.csv").exists()
