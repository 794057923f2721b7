"""One prepared GPU check: writes gpu_report.json (run it through scripts/gpu_check.sh).

Sections, each timed and guarded (an error is recorded in the report and the next section runs):
- env: torch, CUDA, the GPU, bf16 support;
- lite_medsam: the official weights (random ones when the package is missing) through the bundle's
  box-carry inferer, N synthetic 256 x 256 images with one box each: images/s in float32, under bf16
  autocast, bf16 + channels-last and (when time is left) torch.compile of the encoder; Dice of each to
  float32; peak GPU memory (the compiled mode runs last, as its own section);
- bundles: every bundle's tiny config (train.json + tiny.json, synthetic data, random weights) with
  `amp` off and on (bf16): one validation / inference pass on the same weights (seconds, peak memory,
  agreement of the predictions) and a training iteration (seconds of the last of `--iterations`, peak memory);
- propagation, peft, embedding_cache: scripts/bench_propagation.py, bench_peft.py and
  bench_embedding_cache.py in subprocesses (their printed tables kept);
- label_3d: our MONAI Label app's 3D task (medsam2 bundle) against MONAI Label's own SAM2 task
  (`monailabel.sam2.infer.Sam2InferTask`, 3D), both in-process on one synthetic CT (512 x 512 x 96) with
  the same points on one liver slice and the same sam2.1 weights (MONAI Label's default size, large):
  seconds of a first and a next request, per slice, peak GPU memory, Dice to each other and to the truth.

`--dry-run`: CPU, tiny sizes (label_3d: sam2.1 tiny at 32 on 32 x 32 x 4), two bundles, the benchmark
scripts' options only checked: the suite runs it so the script cannot rot. A section is skipped (and
says so) once `--budget-s` is spent. Each section is a module of `scripts/gpu_sections/`; this file
parses the options, runs them in order under the time budget and writes the report.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # monaiseg from this checkout

from gpu_sections.benchmarks import flags_exist, script_section  # noqa: E402
from gpu_sections.bundles import bundle_amp  # noqa: E402
from gpu_sections.common import REPO  # noqa: E402
from gpu_sections.env import env_section  # noqa: E402
from gpu_sections.label_3d import LABEL_SAM2, LABEL_SIZES, label_section  # noqa: E402
from gpu_sections.lite_medsam import lite_medsam_section  # noqa: E402

DRY_BUNDLES = ("unet_cells", "sam_medcls")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_report.json")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes, two bundles (the suite runs this)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu (cpu in a dry run)")
    parser.add_argument("--budget-s", type=float, default=450.0, help="sections still to run are skipped after this")
    parser.add_argument("--bundles", nargs="*", default=None, help="default: all (two in a dry run)")
    parser.add_argument("--iterations", type=int, default=3, help="training iterations per bundle and setting")
    parser.add_argument(
        "--skip", nargs="*", default=(), help="sections to leave out (lite_medsam, bundles, propagation, ...)"
    )
    parser.add_argument(
        "--label-sam2-size",
        choices=sorted(LABEL_SAM2),
        default=None,
        help="sam2.1 size of the MONAI Label comparison (default: large, MONAI Label's own; tiny in a dry run)",
    )
    parser.add_argument(
        "--label-sam2-checkpoint",
        default=None,
        help="official sam2.1 .pt of that size for both label tasks (default: random init, as nothing is downloaded)",
    )
    args = parser.parse_args(argv)
    start = time.monotonic()
    deadline = start + args.budget_s
    device = torch.device(args.device or ("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda"))
    names = args.bundles or (
        list(DRY_BUNDLES)
        if args.dry_run
        else sorted(p.name for p in (REPO / "bundles").iterdir() if p.name[0] != "_" and (p / "configs").is_dir())
    )
    report: dict = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "dry_run": args.dry_run,
        "budget_s": args.budget_s,
    }

    def run(name: str, func, reserve: float = 0.0):
        if name in args.skip:
            report[name] = {"skipped": "--skip"}
            return
        if time.monotonic() > deadline - reserve:
            report[name] = {"skipped": "time budget"}
            return
        t0 = time.perf_counter()
        try:
            report[name] = func()
        except Exception as exc:  # noqa: BLE001 - recorded, the next section runs
            report[name] = {"error": f"{type(exc).__name__}: {exc}"[:2000], "traceback": traceback.format_exc()[-3000:]}
        if isinstance(report[name], dict):
            report[name].setdefault("section_s", round(time.perf_counter() - t0, 1))
        print(f"[gpu_check] {name}: {time.perf_counter() - t0:.1f} s", flush=True)

    run("env", lambda: env_section(device))
    eager_modes = ("float32", "bf16_autocast", "bf16_channels_last")
    run("lite_medsam", lambda: lite_medsam_section(device, args.dry_run, deadline, eager_modes))
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        report["bundles"] = {}
        for name in names if "bundles" not in args.skip else ():
            t0 = time.perf_counter()
            if time.monotonic() > deadline - 60:
                report["bundles"][name] = {"skipped": "time budget"}
                continue
            try:
                report["bundles"][name] = bundle_amp(
                    REPO / "bundles" / name, device, Path(tmp), 1 if args.dry_run else args.iterations
                )
            except Exception as exc:  # noqa: BLE001
                report["bundles"][name] = {
                    "error": f"{type(exc).__name__}: {exc}"[:2000],
                    "traceback": traceback.format_exc()[-3000:],
                }
            report["bundles"][name]["section_s"] = round(time.perf_counter() - t0, 1)
            print(f"[gpu_check] bundle {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    dev = ["--device", str(device)]
    scripts = {
        "propagation": (["scripts/bench_propagation.py", *dev, "--repeats", "2"], 60),
        "peft": (["scripts/bench_peft.py", *dev, "--size", "tiny", "--image-size", "512", "--steps", "5"], 60),
        "embedding_cache": (["scripts/bench_embedding_cache.py", "--variant", "vit_b"], 45),
    }
    for name, (command, reserve) in scripts.items():
        if args.dry_run:
            run(name, lambda c=command: flags_exist(c))
        else:
            run(name, lambda c=command: script_section(c, deadline - time.monotonic()), reserve)
    with tempfile.TemporaryDirectory(prefix="gpu_check_label_") as tmp:
        run(
            "label_3d",
            lambda: label_section(
                device,
                args.dry_run,
                args.label_sam2_size,
                args.label_sam2_checkpoint,
                Path(tmp),
                *LABEL_SIZES[args.dry_run],
            ),
            120,
        )
    if not args.dry_run:  # last: inductor's first compile takes a minute or more
        run(
            "lite_medsam_compiled",
            lambda: lite_medsam_section(device, False, deadline, ("float32", "bf16_compiled")),
            90,
        )
    report["total_s"] = round(time.monotonic() - start, 1)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"[gpu_check] wrote {args.out} in {report['total_s']} s", flush=True)
    return report


if __name__ == "__main__":
    main()
