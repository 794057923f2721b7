"""Cold start of a one-image lite_medsam inference: seconds from a fresh interpreter to the first output file.

Two fresh processes per cache state, both with `PYTHONDONTWRITEBYTECODE=1` (as these machines set it), on
one synthetic 256 x 256 grey PNG with a box sidecar (`inference.json` + `images_2d.json`):

- phases: a child that does what `monai.bundle run` does, one step at a time (`ConfigWorkflow`), and prints
  when each ends: imports (`monai.bundle`, then `monaiseg`), config parsing (`ConfigWorkflow` +
  `initialize()`), network build (the config's `network`: weights, encoder runtime), first output
  (`run()`: the one image read, segmented and written). Wall and CPU seconds (user + sys of the process).
- cli: the command a user types, `python -m monai.bundle run ...`, timed from spawn until the output
  file exists (polled every 20 ms) and until the process exits.

Cache states: "cold" starts from an empty `MONAISEG_CACHE_DIR` (the encoder's ONNX export and OpenVINO
compile run), "warm" reuses the folder the cold runs filled. Wall seconds depend on the machine's load:
the load average is printed beside them; CPU seconds much less so.

    .venv/bin/python scripts/bench_cold_start.py [--states cold warm] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundles" / "lite_medsam" / "configs"
CONFIG_FILES = [str(CONFIGS / "inference.json"), str(CONFIGS / "images_2d.json")]
PHASES = ["imports (monai.bundle)", "imports (monaiseg)", "config parsing", "network build", "first output"]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_input(folder: Path) -> tuple[Path, Path]:
    """A 256 x 256 grey PNG (a bright disc on a darker ramp) and its sidecar prompt file (one box)."""
    import cv2
    import numpy as np

    image = np.tile(np.linspace(30, 90, 256, dtype=np.float32), (256, 1))
    cv2.circle(image, (128, 120), 40, 200, -1)
    path = folder / "disc.png"
    cv2.imwrite(str(path), image.astype(np.uint8))
    prompts = folder / "disc.json"
    prompts.write_text(json.dumps({"objects": [{"label": 1, "box": [84, 76, 172, 164]}]}))
    return path, prompts


def overrides(image: Path, prompts: Path, out: Path) -> dict[str, str]:
    return {
        "input_image": str(image),
        "input_prompts": str(prompts),
        "output_dir": str(out),
        "bundle_root": str(out.parent / "bundle"),
    }


def child(args: argparse.Namespace) -> None:
    """The phases in this (fresh) process; prints one JSON line: phase -> (end wall time, CPU seconds)."""
    marks = {}

    def mark(phase: str) -> None:
        marks[phase] = (time.time(), cpu_seconds())

    import monai.bundle

    mark(PHASES[0])
    import monaiseg  # noqa: F401  (the config's "imports" does it too)

    mark(PHASES[1])
    workflow = monai.bundle.ConfigWorkflow(
        config_file=CONFIG_FILES,
        logging_file=str(CONFIGS / "logging.conf"),
        meta_file=str(CONFIGS / "metadata.json"),
        workflow_type="inference",
        **overrides(Path(args.image), Path(args.prompts), Path(args.out)),
    )
    workflow.initialize()
    mark(PHASES[2])
    workflow.parser.get_parsed_content("network")
    mark(PHASES[3])
    workflow.run()
    if not any(Path(args.out).glob("*_seg.png")):
        raise SystemExit(f"no output written to {args.out}")
    mark(PHASES[4])
    workflow.finalize()
    print("PHASES " + json.dumps(marks), flush=True)


def spawn(cmd: list[str], cache: Path, out: Path) -> tuple[float, float, float, str]:
    """(spawn wall time, seconds to the first `*_seg.png` in `out`, seconds to exit, stdout) of `cmd`."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "MONAISEG_CACHE_DIR": str(cache)}
    start = time.time()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    first = None
    while proc.poll() is None:
        if first is None and any(out.glob("*_seg.png")):
            first = time.time() - start
        time.sleep(0.02)
    output = proc.stdout.read() if proc.stdout else ""
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}):\n{output[-3000:]}")
    end = time.time() - start
    return start, first if first is not None else end, end, output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", nargs="+", default=["cold", "warm"], choices=["cold", "warm"])
    parser.add_argument("--json", help="write the table as JSON here too")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--image", help=argparse.SUPPRESS)
    parser.add_argument("--prompts", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench_cold_start_") as tmp:
        root = Path(tmp)
        image, prompts = make_input(root)
        filled = root / "cache"  # the first run fills it; warm runs read it
        for state in args.states:
            out = root / f"{state}_phases" / "out"
            cache = filled if state == "warm" or not filled.exists() else root / f"cache_{state}_phases"
            start, _, total, text = spawn(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--image",
                    str(image),
                    "--prompts",
                    str(prompts),
                    "--out",
                    str(out),
                ],
                cache,
                out,
            )
            line = next(line for line in text.splitlines() if line.startswith("PHASES "))
            marks = json.loads(line[len("PHASES ") :])
            phases, previous_wall, previous_cpu = {}, start, 0.0
            for phase in PHASES:
                wall, cpu = marks[phase]
                phases[phase] = {"wall_s": wall - previous_wall, "cpu_s": cpu - previous_cpu}
                previous_wall, previous_cpu = wall, cpu
            out = root / f"{state}_cli" / "out"
            cli = [sys.executable, "-m", "monai.bundle", "run", "--config_file", json.dumps(CONFIG_FILES)]
            for key, value in overrides(image, prompts, out).items():
                cli += [f"--{key}", value]
            cache = filled if state == "warm" else root / f"cache_{state}_cli"  # cold: an empty one again
            _, first, exit_s, _ = spawn(cli, cache, out)
            results[state] = {
                "phases": phases,
                "phases_total_s": total,
                "cli_first_output_s": first,
                "cli_exit_s": exit_s,
            }
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    states = list(results)
    print(f"{'phase':<26}" + "".join(f"{s + ' wall s':>13}{s + ' CPU s':>13}" for s in states))
    for phase in PHASES:
        row = "".join(
            f"{results[s]['phases'][phase]['wall_s']:>13.2f}{results[s]['phases'][phase]['cpu_s']:>13.2f}"
            for s in states
        )
        print(f"{phase:<26}{row}")
    print(f"{'phases: process total':<26}" + "".join(f"{results[s]['phases_total_s']:>13.2f}{'':>13}" for s in states))
    print(f"{'cli: first output':<26}" + "".join(f"{results[s]['cli_first_output_s']:>13.2f}{'':>13}" for s in states))
    print(f"{'cli: exit':<26}" + "".join(f"{results[s]['cli_exit_s']:>13.2f}{'':>13}" for s in states))
    if args.json:
        Path(args.json).write_text(json.dumps({"load": load, **results}, indent=2))


if __name__ == "__main__":
    main()
