"""pytest plugin (loaded by tests/conftest.py): how the suite shares the 2 cores under pytest-xdist
(`-n 2`, as scripts/test.sh runs it).

- Tests are sent to the workers in groups (`group_of`), so a costly fixture is built once, on one worker: by
  default a group is a test file (a module's trained bundle); files that share a fixture of a wider scope share
  a group (`SHARED_GROUPS`); the parametrised conformance tests of one bundle form one group (its torchrun
  training and kill / resume trainings are per-bundle session fixtures). xdist's own `loadgroup` cannot do this
  here: it renames node ids, which pytest 9 no longer allows, so this plugin gives xdist its scheduler.
- Groups are sent in collection order, and the heaviest folders are collected first, so the run does not end
  on one long group.
- A worker runs torch, and the processes it starts, on one thread (OMP_NUM_THREADS=1 unless set): two workers
  then keep both cores busy without OpenMP threads spinning against each other.
Without xdist (`-n 0`) none of this applies."""

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


def group_of(nodeid: str, bundles: set[str]) -> str:
    """The group of a test: `conformance-<bundle>` for a conformance test of one of `bundles`, the group its file
    shares in SHARED_GROUPS, else its file."""
    path = nodeid.split("::")[0]
    if path == CONFORMANCE and nodeid.endswith("]"):
        params = nodeid[nodeid.index("[") + 1 : -1].split("-")
        bundle = next((p for p in params if p in bundles), None)
        if bundle is not None:
            return f"conformance-{bundle}"
    return SHARED_GROUPS.get(path, path)


def heaviness(item: pytest.Item) -> int:
    return next((i for i, prefix in enumerate(HEAVY_FIRST) if item.nodeid.startswith(prefix)), len(HEAVY_FIRST))


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER") and "torch" in sys.modules:
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    items.sort(key=heaviness)  # stable: the order inside a folder is kept


def pytest_xdist_make_scheduler(config, log):
    from conftest import BUNDLE_IDS
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """xdist's load-scope scheduling with `group_of` as the scope, groups in collection order."""

        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid, set(BUNDLE_IDS))

    config.option.loadscopereorder = False  # keep the heavy-first order
    return GroupScheduling(config, log)
