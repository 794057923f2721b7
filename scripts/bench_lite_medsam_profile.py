"""Where OpenVINO's CPU plugin spends LiteMedSAM's encoder time, per op type, against the fp32 matmul peak.

One process, one run: the official TinyViT encoder, exported as `encoder_runtime.ExportedEncoder` does
(cached IR), compiled per `--configs` entry (precision f32 / bf16, performance hint, threads) with
`PERF_COUNT`, run `--repeats` times on one input. Printed per config: median seconds per image, GFLOP/s
(FLOPs counted by torch's FlopCounterMode on the eager encoder) as % of the fp32 matmul peak measured at the
start and the end of the run (best of both), and the share of the profiled time per op type and per
kernel (OpenVINO's `profiling_info`: node_type and exec_type; fused nodes count under the node they fuse into).

    .venv/bin/python scripts/bench_lite_medsam_profile.py [--repeats 5]
        [--configs f32:LATENCY:2 f32:LATENCY:1 f32:THROUGHPUT:2 bf16:LATENCY:2] [--top 12] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import runpy
import statistics
import time
from collections import Counter
from pathlib import Path

import torch

from monaiseg.networks import build_lite_medsam
from monaiseg.networks.encoder_runtime import ExportedEncoder

RUNTIME = runpy.run_path(str(Path(__file__).with_name("bench_lite_medsam_runtime.py")))


def profile(
    folder: Path, precision: str, hint: str, threads: int, repeats: int, side: int = 256
) -> tuple[float, Counter, Counter]:
    """Median seconds of `repeats` inferences (input 1 x 3 x `side` x `side`) and the mean real time (s) per op
    type and per kernel."""
    import openvino as ov

    config = {"PERF_COUNT": "YES", "PERFORMANCE_HINT": hint, "INFERENCE_NUM_THREADS": threads}
    compiled = ov.Core().compile_model(
        str(folder / "model.xml"), "CPU", config | {"INFERENCE_PRECISION_HINT": precision}
    )
    request = compiled.create_infer_request()
    x = torch.rand(1, 3, side, side).numpy()
    request.infer({0: x})
    seconds, per_type, per_kernel = [], Counter(), Counter()
    for _ in range(repeats):
        start = time.perf_counter()
        request.infer({0: x})
        seconds.append(time.perf_counter() - start)
        for node in request.profiling_info:
            per_type[node.node_type] += node.real_time.total_seconds() / repeats
            per_kernel[node.exec_type] += node.real_time.total_seconds() / repeats
    return statistics.median(seconds), per_type, per_kernel


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--configs", nargs="+", default=["f32:LATENCY:2", "f32:LATENCY:1", "f32:THROUGHPUT:2", "bf16:LATENCY:2"]
    )
    parser.add_argument("--top", type=int, default=12, help="op types printed per config")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    model = build_lite_medsam(runtime="eager")
    gflop = RUNTIME["encoder_gflop"](model)
    folder = ExportedEncoder(model.image_encoder, (1, 3, 256, 256), "openvino", "f32").folder
    peak = RUNTIME["matmul_peak"]()
    rows = []
    for spec in args.configs:
        precision, hint, threads = spec.split(":")
        seconds, per_type, per_kernel = profile(folder, precision, hint, int(threads), args.repeats)
        total = sum(per_type.values())
        shares = {t: round(100 * s / total, 1) for t, s in per_type.most_common(args.top)}
        kernels = {t: round(100 * s / total, 1) for t, s in per_kernel.most_common(args.top)}
        row = {"config": spec, "s": seconds, "gflops": gflop / seconds, "profiled_s": total, "shares": shares}
        rows.append(row | {"kernels": kernels})
    peak = max(peak, RUNTIME["matmul_peak"]())
    print(f"{torch.get_num_threads()} torch threads, fp32 matmul peak {peak:.0f} GFLOP/s, encoder {gflop:.1f} GFLOP")
    for row in rows:
        row["pct_of_peak"] = 100 * row["gflops"] / peak
        print(
            f"{row['config']:18s} {row['s']:.3f} s/image  {row['gflops']:.1f} GFLOP/s  {row['pct_of_peak']:.1f} % of "
            f"peak  (profiled {row['profiled_s']:.3f} s)"
        )
        print("    op types: " + ", ".join(f"{t} {p} %" for t, p in row["shares"].items()))
        print("    kernels:  " + ", ".join(f"{t} {p} %" for t, p in row["kernels"].items()))
    result = {"matmul_peak_gflops": peak, "encoder_gflop": gflop, "configs": rows}
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
