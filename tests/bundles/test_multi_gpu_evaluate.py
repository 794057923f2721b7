"""`multi_gpu_evaluate.json`: evaluation sharded over torchrun ranks gives, on rank 0, the files of a
single-process evaluation (same metrics, same per-case values, one copy of each file); rank 1 writes none.
The config checks run for every bundle; the torchrun runs (2 CPU processes, gloo) for one bundle per kind."""

from __future__ import annotations

import csv
import json
import math
import re
import sys
from pathlib import Path

import pytest
import torch
from conftest import BUNDLE_IDS, BUNDLES, REPO

from .bundle_training import run_torchrun

NUM_CASES = 5  # 2 ranks: shards of 3 and 2 cases
INIT_GROUP = "$dist.is_initialized() or dist.init_process_group("
TIMING_KEYS = ("fps", "images_per_second", "frames_per_second", "seconds_per_image")


def evaluate_configs(bundle: Path) -> list[str]:
    """The evaluate configs of a bundle (evaluate.json, and e.g. evaluate_video.json)."""
    return sorted(p.name for p in (bundle / "configs").glob("evaluate*.json"))


@pytest.mark.parametrize("bundle", BUNDLES, ids=BUNDLE_IDS)
def test_multi_gpu_evaluate_merges_over_each_evaluate_config(bundle):
    from monai.bundle import ConfigParser

    configs = bundle / "configs"
    multi = json.loads((configs / "multi_gpu_evaluate.json").read_text())
    assert multi["+initialize"][1].startswith(INIT_GROUP) and "gloo" in multi["+initialize"][1]
    assert multi["finalize"][-1] == "$dist.is_initialized() and dist.destroy_process_group()"
    for name in evaluate_configs(bundle):
        evaluate = json.loads((configs / name).read_text())
        parser = ConfigParser()
        parser.read_config([str(configs / "train.json"), str(configs / name), str(configs / "multi_gpu_evaluate.json")])
        init = parser.get("initialize")
        assert init[: len(evaluate["initialize"])] == evaluate["initialize"], name  # the evaluate config's, then
        assert init[len(evaluate["initialize"]) :] == multi["+initialize"], name  # the process group
        for step in evaluate["run"]:  # every step of the evaluate config's run (rank-0 only at most)
            assert any(s.startswith(step) for s in parser.get("run")), (name, step)
        sampler = next(k for k in multi if k.endswith("#sampler"))
        assert multi[sampler]["even_divisible"] is False and multi[sampler]["shuffle"] is False
        evaluator = next(k.removesuffix("#val_handlers") for k in multi if k.endswith("#val_handlers"))
        loader = parser.get(f"{evaluator}#val_data_loader").removeprefix("@")
        assert parser.get(f"{loader}#sampler") == f"@{sampler}", name  # the loader the evaluator runs is sharded
        for ref in set(re.findall(r"@([\w#]+)", json.dumps(multi))):
            assert parser.get(ref) is not None, (name, ref)


@pytest.fixture(scope="module")
def small_ct(tmp_path_factory) -> Path:
    """NUM_CASES `testing` CT volumes of 32 x 32 x 6 (the tiny set's are 48 x 48 x 16: 3D propagation cost)."""
    from monaiseg.data import make_synthetic_ct_dataset

    root = tmp_path_factory.mktemp("small_ct")
    make_synthetic_ct_dataset(root, num_cases=NUM_CASES, shape=(32, 32, 6), seed=3, splits={"testing": NUM_CASES})
    return root


def five_case_datalist(data: dict, out: Path) -> Path:
    """The bundle's synthetic datalist with NUM_CASES `testing` items (taken from all its splits)."""
    content = json.loads((Path(data["dataset_dir"]) / "datalist.json").read_text())
    items = [i for key in ("testing", "validation", "training") for i in content.get(key, [])]
    assert len(items) >= NUM_CASES
    out.write_text(json.dumps({**content, "testing": items[:NUM_CASES]}))
    return out


def save_random_model(bundle: Path, root: Path, data: dict) -> None:
    """models/model.pt of the bundle's tiny network, random init, as its trainings save it."""
    from monai.bundle import ConfigParser
    from monai.utils import set_determinism

    from monaiseg.handlers import save_model_atomic

    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / n) for n in ("train.json", "tiny.json")])
    parser.update({"bundle_root": str(root), **data})
    set_determinism(seed=0)
    save_model_atomic(parser.get_parsed_content("network"), root / "models" / "model.pt")


def evaluate_in_process(bundle: Path, root: Path, overrides: dict) -> None:
    """train.json + evaluate.json + tiny.json in this process, on one thread (as each torchrun rank)."""
    from monai.bundle import ConfigWorkflow

    names = ("train.json", "evaluate.json", "tiny.json")
    workflow = ConfigWorkflow(
        config_file=[str(bundle / "configs" / n) for n in names],
        logging_file=False,
        bundle_root=str(root),
        **overrides,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        workflow.initialize()
        workflow.run()
    finally:
        torch.set_num_threads(threads)
    workflow.finalize()


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def assert_same(ref, got, where: str) -> None:
    """JSON values equal, numbers to 1e-5 (NaN == NaN); timings are not compared."""
    if isinstance(ref, dict):
        assert set(ref) == set(got), where
        for k in ref:
            if not any(t in k for t in TIMING_KEYS):
                assert_same(ref[k], got[k], f"{where}/{k}")
    elif isinstance(ref, list):
        assert len(ref) == len(got), where
        for i, (a, b) in enumerate(zip(ref, got)):
            assert_same(a, b, f"{where}[{i}]")
    elif isinstance(ref, (int, float)) and not isinstance(ref, bool) and ref is not None:
        assert (math.isnan(ref) and math.isnan(got)) or math.isclose(ref, got, rel_tol=1e-5, abs_tol=1e-5), (
            where,
            ref,
            got,
        )
    else:
        assert ref == got, (where, ref, got)


def csv_rows(path: Path) -> list[tuple[tuple[str, ...], list[float | None]]]:
    """(the row's text cells, its numbers) per row, header first."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return [(tuple(c for c in r if _number(c) is None), [_number(c) for c in r]) for r in rows]


def report_cases(path: Path) -> tuple[str, list[str]]:
    """(the summary table, the worst / best cases' captions) of a report.html."""
    page = path.read_text()
    summary = re.search(r'<table class="summary">.*?</table>', page)
    return summary.group(0) if summary else "", re.findall(r"<figcaption>(.*?)</figcaption>", page)


def assert_same_evaluation(ref_dir: Path, got_dir: Path) -> None:
    """The same files; JSON and CSV values equal per case (MONAI's per-case `*_raw.csv` rows come rank after
    rank: compared by file name; every other CSV row by row), report.html's summary and cases equal."""
    ref_files = sorted(p.relative_to(ref_dir).as_posix() for p in ref_dir.rglob("*") if p.is_file())
    got_files = sorted(p.relative_to(got_dir).as_posix() for p in got_dir.rglob("*") if p.is_file())
    assert got_files == ref_files
    for name in ref_files:
        ref, got = ref_dir / name, got_dir / name
        if name.endswith(".json"):
            assert_same(json.loads(ref.read_text()), json.loads(got.read_text()), name)
        elif name.endswith(".csv"):
            ref_rows, got_rows = csv_rows(ref), csv_rows(got)
            if name.endswith("_raw.csv"):
                ref_rows, got_rows = sorted(ref_rows, key=lambda r: r[0]), sorted(got_rows, key=lambda r: r[0])
            assert [r[0] for r in got_rows] == [r[0] for r in ref_rows], name  # names / cases in the same order
            assert_same([r[1] for r in ref_rows], [r[1] for r in got_rows], name)
        elif name.endswith(".html"):
            (ref_summary, ref_cases), (got_summary, got_cases) = report_cases(ref), report_cases(got)
            assert got_cases == ref_cases and len(ref_cases) > 0, name
            ref_numbers = [float(x) for x in re.findall(r"<td>([-\d.]+)</td>", ref_summary)]
            got_numbers = [float(x) for x in re.findall(r"<td>([-\d.]+)</td>", got_summary)]
            assert_same(ref_numbers, got_numbers, name)


# test-only: each rank writes to its own folder, so a file written by rank 1 cannot hide under rank 0's
PER_RANK_OUTPUT = {"output_dir": "$@bundle_root + '/eval_rank' + os.environ['RANK']"}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["medsam2", "medsam", "unet_cells", "sam_medcls"])
def test_two_ranks_give_the_single_process_evaluation(name, tiny_run, small_ct, tmp_path):
    """medsam2 (3D propagation), medsam (2D prompted, box carry), unet_cells (automatic), sam_medcls
    (classification): 5 cases over 2 gloo ranks on a random-init tiny model."""
    bundle = REPO / "bundles" / name
    data = {"dataset_dir": str(small_ct)} if name.startswith("medsam") else tiny_run(bundle)
    root = tmp_path / "root"
    save_random_model(bundle, root, data)
    overrides = {**data, "datalist": str(five_case_datalist(data, tmp_path / "datalist.json"))}
    evaluate_in_process(bundle, root, {**overrides, "output_dir": str(root / "reference")})

    per_rank = tmp_path / "per_rank_output.json"
    per_rank.write_text(json.dumps(PER_RANK_OUTPUT))
    names = ("train.json", "evaluate.json", "tiny.json", "multi_gpu_evaluate.json")
    configs = [str(bundle / "configs" / n) for n in names] + [str(per_rank)]
    args = [a for k, v in overrides.items() for a in (f"--{k}", v if isinstance(v, str) else repr(v))]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += ["-m", "monai.bundle", "run", "--config_file", str(configs), "--bundle_root", str(root), *args]
    proc = run_torchrun(cmd + ["--logging_file", str(bundle / "configs" / "logging.conf")], cwd=root, timeout=600)
    assert proc.returncode == 0, f"{name} torchrun failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"

    rank1 = root / "eval_rank1"
    assert not rank1.exists() or not [p for p in rank1.rglob("*") if p.is_file()]  # rank 1 wrote nothing
    assert_same_evaluation(root / "reference", root / "eval_rank0")
    summary = json.loads((root / "eval_rank0" / "summary.json").read_text())
    counts = [summary[k] for k in ("num_cases", "num_images") if k in summary]
    assert counts == [NUM_CASES]
