"""scripts/check_label_server.py: it finds the suite's issue-26 cases, reports each (a failure with its file
and line, the others still run) and prints `N passed, M failed` last. The full run (two servers, 4 x 10
real-weight requests) is the script's own, not the suite's."""

from __future__ import annotations

import runpy

import pytest
from conftest import REPO

SCRIPT = REPO / "scripts" / "check_label_server.py"


@pytest.fixture(scope="module")
def check():
    return runpy.run_path(str(SCRIPT), run_name="check_label_server")


@pytest.mark.slow
def test_it_runs_every_case_of_the_suite(check):
    import sys

    sys.path[:0] = [str(REPO)]
    from tests.label import test_label_auth, test_label_confinement

    assert check["cases_of"]("test_label_auth") == test_label_auth.CASES
    names = [f.__name__ for f in check["cases_of"]("test_label_confinement")]
    assert names == [n for n in vars(test_label_confinement) if n.startswith("case_")]


def test_failures_are_reported_and_counted_last(check, capsys):
    def bad():
        assert 1 == 2, "one is not two"

    results: list = []
    check["run_cases"]([("good", lambda: None), ("bad", bad), ("after", lambda: None)], results)
    assert [r[0] for r in results] == ["good", "bad", "after"] and results[0][1] == results[2][1] == "passed"
    assert (
        results[1][1].startswith("FAILED: AssertionError: one is not two")
        and "test_check_label_server.py:" in (results[1][1])
    )
    assert check["main"](["--only", "no case has this name"]) == 0  # nothing wanted: no server is started
    assert capsys.readouterr().out.splitlines()[-1] == "0 passed, 0 failed"
