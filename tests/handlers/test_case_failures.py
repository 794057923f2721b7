"""Per-case failures on a real MONAI `SupervisedEvaluator` with a tiny network: a case that cannot be read
(`CaseDataset`, stage "load"), one whose network call fails ("inference") and one whose saving fails ("save")
are recorded and skipped, the other cases run; `failures.csv`, the summary and the exit; `fail_fast`."""

from __future__ import annotations

import csv

import pytest
import torch
from monai.data import DataLoader, MetaTensor
from monai.engines import SupervisedEvaluator
from monai.transforms import Lambdad

from monaiseg.data import CaseDataset, collate_cases
from monaiseg.data.case_guard import failure_reason
from monaiseg.handlers import CaseFailures


def load(name: str) -> MetaTensor:
    if name == "unreadable":
        raise OSError(f"{name}: cannot read")
    return MetaTensor(torch.full((1, 2, 2), 2.0 if name == "nan_net" else 1.0), meta={"filename_or_obj": name})


class Net(torch.nn.Module):
    def forward(self, x):
        if (x == 2).any():
            raise RuntimeError("network failed")
        return x * 3


def save(pred):
    if pred.meta["filename_or_obj"] == "bad_save":
        raise PermissionError("cannot write bad_save_seg.png")
    return pred


def run(tmp_path, names, fail_fast=False, batch_size=1):
    guard = CaseFailures(tmp_path, fail_fast=fail_fast)
    data = CaseDataset([{"image": n} for n in names], Lambdad("image", load), fail_fast=fail_fast)
    saved = []
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=DataLoader(data, batch_size=batch_size, collate_fn=collate_cases()),
        network=Net(),
        postprocessing=Lambdad("pred", lambda p: saved.append(save(p).meta["filename_or_obj"]) or p),
        iteration_update=guard,
        val_handlers=[guard],
    )
    evaluator.run()
    return guard, saved


def test_bad_cases_are_recorded_and_the_others_run(tmp_path, caplog):
    names = ["a", "unreadable", "nan_net", "b", "bad_save", "c"]
    guard, saved = run(tmp_path, names)
    assert saved == ["a", "b", "c"]
    with open(tmp_path / "failures.csv", newline="") as f:
        rows = [tuple(r.values()) for r in csv.DictReader(f)]
    assert rows == [
        ("unreadable", "load", "OSError: unreadable: cannot read"),
        ("nan_net", "inference", "RuntimeError: network failed"),
        ("bad_save", "save", "PermissionError: cannot write bad_save_seg.png"),
    ]
    assert "6 cases: 3 written, 3 failed" in caplog.text
    assert sum(r.getMessage().endswith("; skipped") for r in caplog.records) == 3  # one line per case
    with pytest.raises(SystemExit, match=f"3 of 6 cases failed; see {tmp_path / 'failures.csv'}"):
        guard.exit_on_failure()


def test_a_mixed_batch_keeps_its_readable_cases(tmp_path):
    guard, saved = run(tmp_path, ["a", "unreadable", "b", "c"], batch_size=2)
    assert saved == ["a", "b", "c"] and [r["case"] for r in guard.records] == ["unreadable"]


def test_no_failure_no_file_and_a_stale_list_removed(tmp_path):
    (tmp_path / "failures.csv").write_text("case,stage,reason\nold,load,x\n")
    guard, saved = run(tmp_path, ["a", "b"])
    assert saved == ["a", "b"] and not (tmp_path / "failures.csv").exists()
    guard.exit_on_failure()  # returns


@pytest.mark.parametrize("bad", ["unreadable", "nan_net"])
def test_fail_fast_raises_the_first_error(tmp_path, bad):
    with pytest.raises(Exception) as raised:
        run(tmp_path, ["a", bad, "b"], fail_fast="true")
    assert "cannot read" in repr(raised.value.__cause__ or raised.value) or "network failed" in str(raised.value)
    assert not (tmp_path / "failures.csv").exists()


def test_failure_reason_skips_monai_wrappers():
    try:
        try:
            raise ValueError("p.json: box [1, 2, 0, 3] is reversed\n  detail")
        except ValueError as inner:
            raise RuntimeError("applying transform <LoadBoxesd>") from inner
    except RuntimeError as outer:
        assert failure_reason(outer) == "ValueError: p.json: box [1, 2, 0, 3] is reversed detail"
