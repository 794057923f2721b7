"""The slow-test list of tests/slow_report.py, run on a small suite of its own (pytester)."""

from __future__ import annotations

pytest_plugins = ["pytester"]

SUITE = """
import time
import pytest

@pytest.fixture
def costly():
    time.sleep(0.3)

def test_quick():
    pass

def test_unmarked_sleeper():
    time.sleep(0.3)

def test_unmarked_fixture(costly):
    pass

@pytest.mark.slow
def test_marked_sleeper():
    time.sleep(0.3)
"""


def run(pytester, *args):
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow")
    pytester.makepyfile(SUITE)
    return pytester.runpytest_inprocess("-p", "slow_report", "--slow-seconds", "0.2", *args)


def test_unmarked_tests_over_the_threshold_are_listed_marked_ones_not(pytester):
    result = run(pytester)
    result.assert_outcomes(passed=4)
    result.stdout.fnmatch_lines(["*2 tests not marked slow took over 0.2 s*"])
    listed = [line for line in result.stdout.lines if line.strip().endswith(("_sleeper", "_fixture", "_quick"))]
    assert sorted(line.split("::")[-1] for line in listed) == ["test_unmarked_fixture", "test_unmarked_sleeper"]
    assert all(float(line.split()[0]) > 0.2 for line in listed)
    assert result.ret == 0


def test_strict_mode_fails_the_run(pytester):
    assert run(pytester, "--strict-slow").ret == 1
    assert run(pytester, "--strict-slow", "-m", "not slow", "-k", "quick").ret == 0
