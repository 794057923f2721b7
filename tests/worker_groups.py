"""pytest plugin (loaded by tests/conftest.py): how the suite shares the 2 cores under pytest-xdist
(`-n 2 --dist loadgroup`, as scripts/test.sh runs it).

- Each test gets an `xdist_group`, so a costly fixture is built once, on one worker: by default its file (a
  module's trained bundle); files that share a fixture of a wider scope share a group (`SHARED_GROUPS`); the
  parametrised conformance tests of one bundle form one group (its torchrun training and kill / resume
  trainings are per-bundle session fixtures).
- Groups of the heaviest folders are collected first, so the run does not end on one long group.
- A worker runs torch, and the processes it starts, on one thread (OMP_NUM_THREADS=1 unless set): two workers
  then keep both cores busy without OpenMP threads spinning against each other.
Without xdist (`-n 0`, or a single file) the marks do nothing."""

from __future__ import annotations

import os
import sys

import pytest

# files that share a package- or session-scoped fixture: one group each
SHARED_GROUPS = {
    "tests/label/test_label_server.py": "label_server",  # tests/label/conftest.py shared_server
    "tests/label/test_label_real_weights.py": "label_server",
    "tests/bundles/test_browser_views.py": "conformance-medsam",  # the medsam torchrun of tracked_torchrun
}
CONFORMANCE = "tests/bundles/test_bundles_conformance.py"
HEAVY_FIRST = ("tests/bundles/", "tests/label/", "tests/scripts/")

if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def group_of(item: pytest.Item) -> str:
    path = item.nodeid.split("::")[0]
    callspec = getattr(item, "callspec", None)
    if path == CONFORMANCE and callspec is not None and "bundle" in callspec.params:
        return f"conformance-{callspec.params['bundle'].name}"
    return SHARED_GROUPS.get(path, path)


def heaviness(item: pytest.Item) -> int:
    path = item.nodeid
    return next((i for i, prefix in enumerate(HEAVY_FIRST) if path.startswith(prefix)), len(HEAVY_FIRST))


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER") and "torch" in sys.modules:
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    items.sort(key=heaviness)  # stable: the order inside a folder is kept
    for item in items:
        item.add_marker(pytest.mark.xdist_group(group_of(item)))
