"""One way to run a bundle workflow (`python -m monai.bundle run`) for scripts, tests and the label trainer.

`configs` are config file paths of one bundle (`<bundle>/configs/<name>.json`); the bundle's own
`configs/logging.conf` is used unless `logging_file` is given. Overrides are `--key value` pairs; None is
passed as "null" (the command line cannot pass None; configs read it back with `none_if_null`), a Path as
its string.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, overload


def _config_files(configs: str | Path | Sequence[str | Path]) -> list[str]:
    files = [configs] if isinstance(configs, str | Path) else list(configs)
    if not files:
        raise ValueError("run_bundle needs at least one config file")
    return [str(f) for f in files]


def _overrides(configs: list[str], overrides: dict[str, Any]) -> dict[str, Any]:
    """The overrides with None as "null", paths as strings and the bundle's logging.conf as `logging_file` by
    default."""
    values = {k: "null" if v is None else str(v) if isinstance(v, Path) else v for k, v in overrides.items()}
    logging_conf = Path(configs[0]).parent / "logging.conf"
    if "logging_file" not in values and logging_conf.is_file():
        values["logging_file"] = str(logging_conf)
    return values


def _detach_handlers(stream) -> None:
    """Remove every logging handler that writes to `stream` (a log file about to be closed)."""
    named = [x for x in logging.Logger.manager.loggerDict.values() if isinstance(x, logging.Logger)]
    for logger in [logging.getLogger(), *named]:
        for handler in list(logger.handlers):
            if getattr(handler, "stream", None) is stream:
                logger.removeHandler(handler)


def bundle_command(configs: str | Path | Sequence[str | Path], **overrides: Any) -> list[str]:
    """The `python -m monai.bundle run` command line: `--config_file` lists `configs`, then `--key value` per
    override (strings as they are, other values as Python literals, which the CLI parses back)."""
    files = _config_files(configs)
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", repr(files)]
    for key, value in _overrides(files, overrides).items():
        command += [f"--{key}", value if isinstance(value, str) else repr(value)]
    return command


@overload
def run_bundle(
    configs: str | Path | Sequence[str | Path],
    *,
    in_process: Literal[True],
    log: str | Path | None = None,
    **overrides: Any,
) -> None: ...


@overload
def run_bundle(
    configs: str | Path | Sequence[str | Path],
    *,
    in_process: Literal[False] = False,
    cwd: str | Path | None = None,
    log: str | Path | None = None,
    timeout: float | None = None,
    check: bool = True,
    **overrides: Any,
) -> subprocess.CompletedProcess: ...


def run_bundle(
    configs: str | Path | Sequence[str | Path],
    *,
    in_process: bool = False,
    cwd: str | Path | None = None,
    log: str | Path | None = None,
    timeout: float | None = None,
    check: bool = True,
    **overrides: Any,
) -> subprocess.CompletedProcess | None:
    """Run the workflow of `configs` with `overrides`.

    `in_process`: MONAI's `monai.bundle.run` in this process (returns None; errors propagate as raised), its
    output appended to `log` when given (the logging handlers the run set up on that file are removed after it).
    Otherwise a subprocess in `cwd` (default: the bundle folder): its output is appended to `log` (a file,
    stdout and stderr together) or is captured; with `check`, a non-zero exit raises RuntimeError naming the
    configs, with the last lines of the output. Returns the CompletedProcess."""
    files = _config_files(configs)
    if in_process:
        from monai.bundle import run

        if log is None:
            run(config_file=files, **_overrides(files, overrides))
            return None
        with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
            try:
                run(config_file=files, **_overrides(files, overrides))
            finally:
                _detach_handlers(f)
        return None
    command = bundle_command(files, **overrides)
    folder = cwd if cwd is not None else Path(files[0]).parents[1]
    if log is None:
        proc = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=timeout)
        output = f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    else:
        with open(log, "a") as f:
            done = subprocess.run(command, cwd=folder, stdout=f, stderr=subprocess.STDOUT, timeout=timeout)
        proc = subprocess.CompletedProcess(command, done.returncode)
        output = "\n".join(Path(log).read_text().splitlines()[-40:])
    if check and proc.returncode != 0:
        names = ", ".join(Path(f).name for f in files)
        raise RuntimeError(f"monai.bundle run [{names}] failed with exit code {proc.returncode}:\n{output}")
    return proc
