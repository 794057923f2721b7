"""Batch inference (`configs/batch_inference.json`) on a folder or a list of files, with sidecar prompts, and
its torchrun sharding (`configs/multi_gpu_inference.json`): one output per input, named after it; the same
files from 2 processes as from one; a bad case skipped and listed in failures.csv (also from torchrun); bad
input of the run as a whole stopped before any output."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import BUNDLE_IDS, BUNDLES, REPO, error_chain
from PIL import Image

from .bundle_training import run_torchrun


def configs(bundle: str, *names: str) -> list[str]:
    return [str(REPO / "bundles" / bundle / "configs" / n) for n in ("inference.json", *names, "tiny.json")]


def run_batch(bundle: str, root, output_dir, **overrides) -> None:
    """inference.json + batch_inference.json + tiny.json in this process, random weights, one thread (as each
    torchrun worker)."""
    from monai.bundle import run

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run(
            config_file=configs(bundle, "batch_inference.json"),
            logging_file=False,
            bundle_root=str(root),
            output_dir=str(output_dir),
            **overrides,
        )
    finally:
        torch.set_num_threads(threads)


def rgb_images(folder, sizes, seed=0) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for n, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w, 3), np.uint8)).save(folder / f"img_{n}.png")
        names.append(f"img_{n}")
    return names


@pytest.mark.parametrize("bundle", BUNDLES, ids=BUNDLE_IDS)
def test_configs_exist_and_resolve(bundle, tmp_path):
    """Every bundle has both configs; a folder of inputs with their sidecars resolves to its items, and the
    sampler shards the dataset the dataloader reads, in order, without padding."""
    from monai.bundle import ConfigParser

    names = ("inference.json", "batch_inference.json", "multi_gpu_inference.json")
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / n) for n in names])
    suffix = parser.get_parsed_content("input_suffix")
    sidecars = parser.get("sidecars", {})
    for case in ("case_b", "case_a"):
        (tmp_path / suffix.replace("*", case)).write_text("x")
        for template in sidecars.values():
            (tmp_path / template.format(name=case, ext=suffix.replace("*", ""))).write_text("x")
    parser["input_dir"] = str(tmp_path)
    items = parser.get_parsed_content("batch_items")
    assert [item["image"] for item in items] == [str(tmp_path / suffix.replace("*", c)) for c in ("case_a", "case_b")]
    assert all(set(item) == {"image", *sidecars} for item in items)
    assert parser.get("sampler#dataset") == parser.get("dataloader#dataset")
    assert parser.get("sampler#even_divisible") is False and parser.get("sampler#shuffle") is False
    assert parser.get("dataloader#sampler") == "@sampler"
    init = parser.get("initialize")
    assert "set_determinism" in init[0] and any("init_process_group" in step for step in init[1:])  # kept, then
    assert "destroy_process_group" in parser.get("finalize")[-2]
    assert parser.get("finalize")[-1] == "$@case_failures.exit_on_failure()"  # after the group is gone


def torchrun(bundle: str, root, *args: str, returncode: int = 0) -> subprocess.CompletedProcess:
    """inference.json + batch_inference.json + multi_gpu_inference.json + tiny.json with torchrun, 2 CPU processes;
    each rank writes to `<root>/out_rank<r>` (test-only), so what each rank wrote can be told apart. Asserts the
    launcher's exit code: `returncode`, or any non-zero code for -1."""
    per_rank = root / "per_rank_output.json"
    per_rank.write_text(json.dumps({"output_dir": "$@bundle_root + '/out_rank' + os.environ['RANK']"}))
    names = [*configs(bundle, "batch_inference.json", "multi_gpu_inference.json"), str(per_rank)]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "monai.bundle", "run", "--config_file", str(names), "--bundle_root", str(root), *args]
    proc = run_torchrun(cmd, cwd=root, timeout=300)
    ok = proc.returncode != 0 if returncode == -1 else proc.returncode == returncode
    assert ok, f"{bundle} torchrun exit code {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


def failure_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_folder_with_bad_cases_and_torchrun_shards_give_the_same_files(tmp_path):
    """sam_med2d: a folder of 3 good images, one with a prompt file that is not JSON and a broken image (each
    with its `<name>_prompts.json`) -> 3 label maps named after them, in the input's shape, the 2 bad cases in
    failures.csv, exit 1 (`CaseFailures`); torchrun on 2 processes (DistributedSampler shards): rank 0 writes
    images 0 and 2 and fails on the broken image, rank 1 writes image 1 and fails on the bad prompt file, the
    label maps byte-identical to the single-process files, failures.csv written by rank 0 alone with both
    ranks' cases, the launcher's exit code non-zero."""
    sizes = [(40, 48), (48, 48), (56, 40), (32, 32)]
    names = rgb_images(tmp_path / "in", sizes)
    for n, (h, w) in zip(names, sizes):
        objects = [{"label": 2, "box": [3, 3, w // 2, h // 2]}]
        (tmp_path / "in" / f"{n}_prompts.json").write_text(json.dumps({"objects": objects}))
    (tmp_path / "in" / f"{names[3]}_prompts.json").write_text('{"objects": [')
    broken = tmp_path / "in" / "zz_broken.png"
    broken.write_bytes(b"not an image")
    (tmp_path / "in" / "zz_broken_prompts.json").write_text(
        json.dumps({"objects": [{"label": 1, "box": [1, 1, 4, 4]}]})
    )
    (tmp_path / "in" / "notes.txt").write_text("not an input")
    bad = [(str(tmp_path / "in" / f"{names[3]}.png"), "load"), (str(broken), "load")]
    with pytest.raises(SystemExit, match="2 of 5 cases failed"):
        run_batch("sam_med2d", tmp_path, tmp_path / "single", input_dir=str(tmp_path / "in"))
    single = {p.name: p.read_bytes() for p in (tmp_path / "single").iterdir()}
    assert sorted(single) == ["failures.csv", *(f"{n}_seg.png" for n in names[:3])]
    for n, shape in zip(names, sizes[:3]):
        assert np.asarray(Image.open(tmp_path / "single" / f"{n}_seg.png")).shape == shape
    rows = failure_rows(tmp_path / "single" / "failures.csv")
    assert [(r["case"], r["stage"]) for r in rows] == bad
    assert f"{names[3]}_prompts.json" in rows[0]["reason"]

    proc = torchrun("sam_med2d", tmp_path, "--input_dir", str(tmp_path / "in"), returncode=-1)
    assert "2 of 5 cases failed" in proc.stdout + proc.stderr
    ranks = [{p.name: p.read_bytes() for p in (tmp_path / f"out_rank{r}").iterdir()} for r in (0, 1)]
    assert sorted(ranks[0]) == ["failures.csv", f"{names[0]}_seg.png", f"{names[2]}_seg.png"]
    assert sorted(ranks[1]) == [f"{names[1]}_seg.png"]
    assert {k: v for k, v in ranks[0].items() if k != "failures.csv"} | ranks[1] == {
        k: v for k, v in single.items() if k != "failures.csv"
    }
    assert sorted((r["case"], r["stage"]) for r in failure_rows(tmp_path / "out_rank0" / "failures.csv")) == bad


@pytest.mark.slow
def test_classification_list_one_predictions_file_also_from_torchrun(tmp_path):
    """sam_medcls on a .txt list: one predictions table, a row per listed image in list order; torchrun on 2
    processes: rank 0 alone writes the table, merged in list order (the probabilities of other batches: equal
    to 1e-6), rank 1 writes nothing."""
    names = rgb_images(tmp_path / "in", [(48, 48), (40, 56), (48, 48)])
    (tmp_path / "in" / "list.txt").write_text("img_2.png\nimg_0.png\nimg_1.png\n")
    run_batch(
        "sam_medcls",
        tmp_path,
        tmp_path / "out",
        input_list=str(tmp_path / "in" / "list.txt"),
        checkpoint="null",
        class_names=["a", "b", "c"],
    )
    records = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [r["image"] for r in records] == [str(tmp_path / "in" / f"{names[i]}.png") for i in (2, 0, 1)]
    assert all(sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-5) for r in records)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["predictions.csv", "predictions.json"]
    assert len((tmp_path / "out" / "predictions.csv").read_text().splitlines()) == 4  # header + 3 images

    classes = str(["a", "b", "c"])
    torchrun(
        "sam_medcls",
        tmp_path,
        "--input_list",
        str(tmp_path / "in" / "list.txt"),
        "--class_names",
        classes,
        "--checkpoint",
        "null",
    )
    assert not (tmp_path / "out_rank1").exists() or not any((tmp_path / "out_rank1").iterdir())
    assert sorted(p.name for p in (tmp_path / "out_rank0").iterdir()) == ["predictions.csv", "predictions.json"]
    merged = json.loads((tmp_path / "out_rank0" / "predictions.json").read_text())
    assert [(r["image"], r["predicted"]) for r in merged] == [(r["image"], r["predicted"]) for r in records]
    for one, two in zip(merged, records):
        assert one["probabilities"] == pytest.approx(two["probabilities"], abs=1e-6)


@pytest.mark.slow
def test_prompted_2d_folder_with_prompt_sidecars(tmp_path):
    """sam_med2d: each image's `<name>_prompts.json` (a box, points) -> `<name>_seg.png` in the image's shape,
    its values the objects' labels; a prompt file with a box outside its image fails that case only (read per
    case by `ReadObjectPromptsd`)."""
    sizes = [(48, 64), (64, 64), (40, 56), (32, 32)]
    names = rgb_images(tmp_path / "in", sizes)
    for n, (h, w) in zip(names, sizes):
        objects = [{"label": 1, "box": [4, 4, w // 2, h // 2]}, {"label": 3, "points": [[w - 5, h - 5]]}]
        (tmp_path / "in" / f"{n}_prompts.json").write_text(json.dumps({"objects": objects}))
    bad = {"objects": [{"label": 1, "box": [4, 4, 40, 8]}]}  # x1 = 40 outside the last, 32-pixel-wide image
    (tmp_path / "in" / f"{names[-1]}_prompts.json").write_text(json.dumps(bad))
    with pytest.raises(SystemExit, match="1 of 4 cases failed"):
        run_batch("sam_med2d", tmp_path, tmp_path / "out", input_dir=str(tmp_path / "in"))
    names, sizes = names[:-1], sizes[:-1]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["failures.csv", *(f"{n}_seg.png" for n in names)]
    assert "outside the 32x32 image" in failure_rows(tmp_path / "out" / "failures.csv")[0]["reason"]
    for n, shape in zip(names, sizes):
        seg = np.asarray(Image.open(tmp_path / "out" / f"{n}_seg.png"))
        assert seg.shape == shape and set(np.unique(seg)) <= {0, 1, 3}


def ct_volume(path, shape=(32, 28, 4), seed=0):
    rng = np.random.default_rng(seed)
    nib.save(nib.Nifti1Image(rng.integers(-200, 200, shape).astype(np.int16), np.eye(4)), path)


@pytest.mark.slow
def test_prompted_3d_json_or_label_sidecar(tmp_path):
    """lite_medsam (3D): one volume prompted by `<name>_prompts.json`, one by a `<name>_label.nii.gz` (not an
    input itself, although it matches `*.nii.gz`), one by both: a `<name>_seg.nii.gz` per volume, its shape."""
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(3):
        ct_volume(folder / f"ct{n}.nii.gz", seed=n)
    prompts = {"objects": [{"label": 1, "slice": 2, "box": [4, 4, 20, 18]}]}
    for n in (0, 2):
        (folder / f"ct{n}_prompts.json").write_text(json.dumps(prompts))
    label = np.zeros((32, 28, 4), np.uint8)
    label[8:20, 6:16, 1:3] = 2
    for n in (1, 2):
        nib.save(nib.Nifti1Image(label, np.eye(4)), folder / f"ct{n}_label.nii.gz")
    run_batch("lite_medsam", tmp_path, tmp_path / "out", input_dir=str(folder))
    outputs = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert outputs == ["ct0_seg.nii.gz", "ct1_seg.nii.gz", "ct2_seg.nii.gz"]
    for name in outputs:
        assert nib.load(tmp_path / "out" / name).shape == (32, 28, 4)


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, message",
    [
        ("empty folder", r"no input in folder .*in matches input_suffix '\*\.nii\.gz'"),
        ("missing listed file", r"input .*ct9\.nii\.gz \(listed in input_list\) not found"),
        ("no sidecar", r"ct1\.nii\.gz: no prompts .*ct1_prompts\.json or .*ct1_label\.nii\.gz"),
    ],
)
def test_bad_input_stops_before_any_output(tmp_path, case, message):
    folder = tmp_path / "in"
    folder.mkdir()
    if case != "empty folder":
        for n in range(2):
            ct_volume(folder / f"ct{n}.nii.gz", seed=n)
        prompts = {"objects": [{"label": 1, "slice": 1, "box": [2, 2, 9, 9]}]}
        (folder / "ct0_prompts.json").write_text(json.dumps(prompts))
    inputs = (
        {"input_list": [str(folder / "ct0.nii.gz"), str(folder / "ct9.nii.gz")]}
        if case == "missing listed file"
        else {"input_dir": str(folder)}
    )
    with pytest.raises(Exception) as info:
        run_batch("lite_medsam", tmp_path, tmp_path / "out", **inputs)
    assert re.search(message, error_chain(info.value))
    assert not (tmp_path / "out").exists()
