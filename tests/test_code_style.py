"""The linter and formatter as tests, so the code style cannot rot: ruff (lint + format check) with the
settings of pyproject.toml over the package, the tests and the scripts."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO

TREES = ["monaiseg", "tests", "scripts"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args, *TREES], cwd=REPO, capture_output=True, text=True)


def test_ruff_lint_is_clean():
    result = _ruff("check", "--output-format", "concise", "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean():
    result = _ruff("format", "--check", "--no-cache")
    assert result.returncode == 0, "run `.venv/bin/ruff format monaiseg tests scripts`:\n" + result.stdout


@pytest.mark.parametrize("args", [["check", "--select", "E501"], ["format", "--check"]])
def test_ruff_reports_a_violation(tmp_path, args):
    """The check can fail: a 130-character line and a badly formatted call are reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("x = [" + ", ".join(["1"] * 42) + "]\ny = dict( a =1 )\n")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--no-cache", "--config", str(REPO / "pyproject.toml"), str(bad)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1, result.stdout
