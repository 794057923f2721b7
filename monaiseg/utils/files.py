"""Atomic writes: a reader never sees a half-written file or folder, and a failure leaves nothing."""

from __future__ import annotations

import csv
import json
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_outputs(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield temporary paths (same folders and suffixes) to write ``paths`` through.

    On success every temporary file is renamed onto its target; on error all of them are
    removed and no target is touched, so no partial output is ever left behind.
    """
    targets = [Path(p) for p in paths]
    tmps = [t.with_name(f".tmp-{secrets.token_hex(4)}-{t.name}") for t in targets]
    for t in targets:
        t.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield tmps
        for tmp, target in zip(tmps, targets):
            os.replace(tmp, target)
    finally:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)


@contextmanager
def atomic_folders(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Yield empty temporary sibling folders, renamed onto ``paths`` once all are written.

    A target must not exist or be an empty folder (nothing is ever overwritten). On error every
    temporary folder and every target already renamed is removed, so nothing is left half-written.
    """
    targets = [Path(t) for t in paths]
    for target in targets:
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise FileExistsError(f"{target}: already exists and is not an empty folder; refusing to overwrite.")
    tmps = [t.with_name(f".tmp-{secrets.token_hex(4)}-{t.name}") for t in targets]
    renamed: list[Path] = []
    try:
        for tmp in tmps:
            tmp.mkdir(parents=True)
        yield tmps
        for tmp, target in zip(tmps, targets):
            if target.exists():
                target.rmdir()
            os.rename(tmp, target)
            renamed.append(target)
    except BaseException:
        for target in renamed:
            shutil.rmtree(target, ignore_errors=True)
        raise
    finally:
        for tmp in tmps:
            shutil.rmtree(tmp, ignore_errors=True)


def write_json_atomic(path: str | os.PathLike, content: Mapping | Sequence) -> None:
    """Write `content` as indented JSON to `path` through `atomic_outputs`."""
    with atomic_outputs(path) as (tmp,):
        tmp.write_text(json.dumps(content, indent=2))


def write_csv_atomic(path: str | os.PathLike, rows: Sequence[Mapping]) -> None:
    """Write `rows` (dicts with the same keys; the first row's keys are the header) as CSV through `atomic_outputs`."""
    with atomic_outputs(path) as (tmp,), open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
