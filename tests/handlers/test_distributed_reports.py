"""Report handlers under torch.distributed (2 forked gloo ranks, each evaluating its DistributedSampler shard):
rank 0 writes exactly the files of one process evaluating every case, rank 1 writes nothing."""

from __future__ import annotations

from pathlib import Path

import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.utils import evenly_divisible_all_gather

from monaiseg.handlers import EndoVisReportWriter, EvaluationReport, InteractiveReportWriter
from monaiseg.metrics.organs import OrganMetrics
from monaiseg.utils import world_size

from ..utils.test_distributed import run_ranks, shard
from .test_validation_overlays import segmentation_case

WORLD = 2


def evaluate(handler, items: list[dict], details: torch.Tensor | None = None) -> Engine:
    """Run `handler` on an "evaluator" whose output is the batch; `details` (cases, ...) of these items become
    `metric_details["val_mean_dice"]`, gathered over ranks as MONAI's Cumulative does (rank after rank)."""
    engine = Engine(lambda e, batch: batch)

    def metrics(e):
        if details is None:
            return
        gathered = details if world_size() == 1 else evenly_divisible_all_gather(details, concat=True)
        e.state.metrics = {"val_mean_dice": float(gathered.nanmean())}
        e.state.metric_details = {"val_mean_dice": gathered}

    engine.add_event_handler(Events.EPOCH_COMPLETED, metrics)
    handler.attach(engine)
    engine.run([[item] for item in items], max_epochs=1)
    return engine


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*"))} if folder.exists() else {}


def seg_cases(n: int) -> list[dict]:
    cases = []
    for i in range(n):
        case = segmentation_case(f"case{i:02d}")
        case["pred"] = torch.roll(case["label"], (i * 5) % 7, dims=1)  # Dice varies; ties among equal shifts
        cases.append(case)
    return cases


def test_evaluation_report_keeps_the_worst_and_best_of_all_ranks(tmp_path):
    cases, details = seg_cases(9), torch.rand(9, 1)  # shards of 5 and 4 cases

    def report(folder: Path, items: list[dict], rows: torch.Tensor) -> None:
        evaluate(EvaluationReport(folder / "report.html", label_names=["liver"], num_cases=2, config={}), items, rows)

    report(tmp_path / "single", cases, details)
    results = run_ranks(
        lambda r: report(tmp_path / f"rank{r}", shard(cases, r), shard(details, r)), tmp_path, world=WORLD
    )
    assert all(status == "ok" for status, _ in results), results
    single = files(tmp_path / "single")
    assert list(single) == ["report.html"] and b"2 worst cases" in single["report.html"]
    assert files(tmp_path / "rank0") == single  # byte for byte: summary, per-case plot, pictures
    assert files(tmp_path / "rank1") == {}


def endovis_frame(i: int) -> dict:
    gen = torch.Generator().manual_seed(i)
    image = MetaTensor(torch.rand(3, 8, 8, generator=gen), meta={"filename_or_obj": f"seq_1/frame{i:03d}.png"})
    label = torch.randint(0, 4, (1, 8, 8), generator=gen)
    pred = torch.where(torch.rand(1, 8, 8, generator=gen) < 0.7, label, torch.randint(0, 4, (1, 8, 8), generator=gen))
    return {"image": image, "pred": pred, "label": label}


def test_endovis_report_metrics_on_every_rank_files_on_rank_0(tmp_path):
    frames = [endovis_frame(i) for i in range(7)]
    names = ["instrument", "clasper", "needle"]

    def run(folder: Path, items: list[dict]) -> dict:
        return dict(evaluate(EndoVisReportWriter(names, output_dir=str(folder)), items).state.metrics)

    single = run(tmp_path / "single", frames)
    results = run_ranks(lambda r: run(tmp_path / f"rank{r}", shard(frames, r)), tmp_path, world=WORLD)
    assert [status for status, _ in results] == ["ok", "ok"], results
    assert all(metrics == single for _, metrics in results)  # e.g. BestModelSaver sees the same on each rank
    assert set(single) >= {"challenge_iou", "iou", "mciou"}
    assert files(tmp_path / "rank0") == files(tmp_path / "single") and len(files(tmp_path / "single")) == 2
    assert files(tmp_path / "rank1") == {}


def test_interactive_report_pairs_gathered_details_with_the_right_images(tmp_path):
    modes, classes = ["box", "1_point"], {"1": "organ", "2": "lesion"}
    images = [{"image": MetaTensor(torch.zeros(1, 4, 4), meta={"filename_or_obj": f"/d/img{i}.png"})} for i in range(5)]
    details = torch.arange(5 * 4, dtype=torch.float32).reshape(5, 4) / 20  # (images, modes x classes), distinct

    def run(folder: Path, items: list[dict], rows: torch.Tensor) -> None:
        writer = InteractiveReportWriter(str(folder), modes, classes, {"dice": "val_mean_dice"})
        evaluate(writer, items, rows)

    run(tmp_path / "single", images, details)
    results = run_ranks(lambda r: run(tmp_path / f"rank{r}", shard(images, r), shard(details, r)), tmp_path)
    assert [status for status, _ in results] == ["ok", "ok"], results
    single = files(tmp_path / "single")
    assert b"img1.png,organ,0.2" in single["box.csv"]  # image 1, mode 0, class 0: details[1, 0] = 4 / 20
    assert files(tmp_path / "rank0") == single and files(tmp_path / "rank1") == {}


def test_organ_metrics_gather_the_cases_of_every_rank_in_dataset_order(tmp_path):
    def case(i: int) -> tuple[str, torch.Tensor, torch.Tensor]:
        gt = torch.zeros(12, 12, dtype=torch.int64)
        gt[2:8, 2:8], gt[8:11, 1:4] = 1, 2
        return f"case{i}", torch.roll(gt, i, dims=0), gt

    cases = [case(i) for i in range(5)]

    def rows(items) -> list[dict]:
        metrics = OrganMetrics({"1": "liver", "2": "spleen"})
        for name, pred, gt in items:
            metrics.add(name, pred, gt)
        metrics.gather()
        return metrics.rows()

    single = rows(cases)
    results = run_ranks(lambda r: rows(shard(cases, r)), tmp_path)
    assert [r["case"] for r in single] == [f"case{i}" for i in range(5)]
    assert results == [("ok", single), ("ok", single)]
