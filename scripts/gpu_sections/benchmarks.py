"""Sections `propagation`, `peft`, `embedding_cache`: a benchmark script in a subprocess (its printed table
kept), or in a dry run only a check that the script defines every option the real run passes."""

from __future__ import annotations

import subprocess
import sys
import time

from .common import REPO


def flags_exist(args: list[str]) -> dict:
    """Dry run: the script exists and defines every option the real run passes (cheaper than starting it)."""
    source = (REPO / args[0]).read_text()
    missing = [a for a in args[1:] if a.startswith("--") and f'"{a}"' not in source]
    if missing:
        raise ValueError(f"{args[0]} has no option {missing}")
    return {"command": " ".join(args), "options_checked": True}


def script_section(args: list[str], timeout: float) -> dict:
    """A benchmark script in a subprocess: its command, return code, seconds and the tail of its output."""
    command = [sys.executable, *args]
    start = time.perf_counter()
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=max(timeout, 1))
        code, text = done.returncode, done.stdout + done.stderr
    except subprocess.TimeoutExpired as exc:
        code, text = (
            "timeout",
            (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else str(exc.stdout or ""),
        )
    lines = [ln for ln in text.splitlines() if ln.strip() and "Warning" not in ln and "it/s]" not in ln]
    return {
        "command": " ".join(args),
        "returncode": code,
        "seconds": round(time.perf_counter() - start, 1),
        "output": lines[-25:],
    }
