"""The linter, formatter and type checker as tests, so the code style cannot rot: ruff (lint + format check)
with the settings of pyproject.toml over the package, the tests and the scripts; mypy over the package."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

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


@pytest.mark.slow
def test_mypy_is_clean():
    """mypy with pyproject.toml's settings (`packages = ["monaiseg"]`). Its cache lives outside the tree
    (`MYPY_CACHE_DIR`, else one folder per user in the temp dir): about a minute from a cold cache on 2 cores,
    a second or two warm."""
    cache = os.environ.get("MYPY_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), f"monaiseg-mypy-cache-{os.getuid()}"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", cache], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, "mypy (pyproject.toml settings) reports:\n" + result.stdout + result.stderr
