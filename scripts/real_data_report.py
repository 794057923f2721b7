"""docs/benchmarks.md's "Real weights, real data, 2 CPU cores": runs every `scripts/real_data_<name>.py` and prints
their rows as one markdown table.

Each report script trains a bundle with its own `train.json` and measures it with its own `evaluate.json` on
a real sample set, then writes its rows as JSON (`--out`); this script runs them one after another (so their
wall times do not overlap), checks every row and prints the table. `--rows` reprints saved rows without
running anything.

Usage:
    .venv/bin/python scripts/real_data_report.py --data DIR [--only lite_medsam,cells] [--quick] [--save DIR]
    .venv/bin/python scripts/real_data_report.py --rows DIR_OR_FILES...

`--data` holds the sample sets (`wbc_cellavision/`, `endotect_polyp/`, `deeplesion_ct/`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
ROW_KEYS = {"bundle": str, "data": str, "metric": str, "before_kind": str, "after": float, "time_s": float, "note": str}
BEFORE_KINDS = ("zero-shot", "random-init", "none")


def report_scripts() -> dict[str, Path]:
    """{name: path} of every `real_data_<name>.py` beside this script, sorted by name."""
    return {
        p.stem.removeprefix("real_data_"): p
        for p in sorted(SCRIPTS.glob("real_data_*.py"))
        if p.stem != "real_data_report"
    }


def check_rows(rows, source: str) -> list[dict]:
    """The rows of one script's JSON, each checked for the keys and types of the table (ValueError naming `source`)."""
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{source}: expected a non-empty JSON list of rows, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValueError(f"{source}: row {i} is not an object")
        for key, kind in ROW_KEYS.items():
            value = row.get(key)
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind):
                raise ValueError(f"{source}: row {i} needs {key!r} as {kind.__name__}, got {value!r}")
        if row["before_kind"] not in BEFORE_KINDS:
            raise ValueError(
                f"{source}: row {i} has before_kind {row['before_kind']!r}, expected one of {BEFORE_KINDS}"
            )
        if (row.get("before") is None) != (row["before_kind"] == "none"):
            raise ValueError(f"{source}: row {i} needs 'before' exactly when before_kind is not 'none'")
    return rows


def load_rows(path: Path) -> list[dict]:
    try:
        return check_rows(json.loads(path.read_text()), str(path))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e})") from e


def run_script(path: Path, data: str, quick: bool, out: Path) -> list[dict]:
    """Run one report script with `--out`, echoing its output; its rows, checked."""
    cmd = [sys.executable, str(path), "--data", data, "--out", str(out)] + (["--quick"] if quick else [])
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd)
    if done.returncode != 0:
        raise RuntimeError(f"{path.name} failed with exit code {done.returncode}")
    return load_rows(out)


def bundle_run(bundle: str, configs: list, overrides: dict, log: Path) -> float:
    """`python -m monai.bundle run` in `bundles/<bundle>` (`monaiseg.utils.run_bundle`) with `configs` (paths, or
    names in its configs/) and `overrides`; wall seconds. The output goes to `log`; a failure raises RuntimeError
    with its last lines."""
    from monaiseg.utils.bundle_run import run_bundle

    folder = SCRIPTS.parent / "bundles" / bundle
    start = time.perf_counter()
    done = run_bundle([folder / "configs" / c for c in configs], cwd=folder, log=log, check=False, **overrides)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-20:])
        names = ", ".join(Path(c).name for c in configs)
        raise RuntimeError(f"{bundle}: {names} failed (exit {done.returncode}); last lines of {log}:\n{tail}")
    return seconds


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def table(rows: list[dict]) -> str:
    """Markdown: bundle | data | metric | before training | after training | wall time | note."""
    lines = [
        "| bundle | data | metric | before training | after training | wall time | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        before = "-" if row["before_kind"] == "none" else f"{row['before']:.3f} ({row['before_kind']})"
        lines.append(
            f"| {row['bundle']} | {row['data']} | {row['metric']} | {before} | {row['after']:.3f} "
            f"| {duration(row['time_s'])} | {row['note']} |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder holding the sample sets")
    parser.add_argument("--only", help=f"comma-separated report names, of: {', '.join(report_scripts())}")
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script (smoke run, not a result)")
    parser.add_argument("--save", help="folder to keep each script's rows in (<name>.json)")
    parser.add_argument("--rows", nargs="+", help="reprint saved rows (JSON files or folders of them); runs nothing")
    args = parser.parse_args(argv)
    try:
        if args.rows:
            files = [f for p in map(Path, args.rows) for f in (sorted(p.glob("*.json")) if p.is_dir() else [p])]
            rows = [row for f in files for row in load_rows(f)]
        else:
            if not args.data:
                parser.error("--data DIR is required unless --rows is given")
            scripts = report_scripts()
            names = args.only.split(",") if args.only else list(scripts)
            unknown = sorted(set(names) - set(scripts))
            if unknown:
                parser.error(f"unknown report(s) {unknown}; known: {sorted(scripts)}")
            with tempfile.TemporaryDirectory() as tmp:
                keep = Path(args.save) if args.save else Path(tmp)
                keep.mkdir(parents=True, exist_ok=True)
                rows = [
                    row
                    for name in names
                    for row in run_script(scripts[name], args.data, args.quick, keep / f"{name}.json")
                ]
    except (ValueError, RuntimeError) as e:
        sys.exit(f"real_data_report: {e}")
    print(table(rows))


if __name__ == "__main__":
    main()
