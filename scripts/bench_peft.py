"""Training cost of BloodCellSAM2's PEFT vs full fine-tuning (ablation Abl-1) on a tiny config.

Each mode runs in its own subprocess, one after the other, so peak memory is per mode:
  peft: LoRA (q, k; last 4 blocks) + decoder adapters + density branch trainable, rest frozen;
  full: plain SAM2, every parameter trainable (no LoRA / adapters / density branch).
Both train on random images with box prompts and MONAI's DiceFocalLoss, AdamW.
Reported: mean step time over `--steps` steps after `--warmup` steps, and peak memory: on CUDA
`torch.cuda.max_memory_allocated` (and its increase over the weights), on CPU the increase of
the peak RSS (`resource.getrusage`) over the RSS measured just before the first step.

    python scripts/bench_peft.py [--size tiny] [--image-size 256] [--batch 2] [--steps 5] [--warmup 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

MODES = ("peft", "full")


def current_rss_mib() -> float:
    """Resident set size now (Linux /proc), MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is in KiB on Linux), MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(args) -> dict:
    """Train `args.worker` mode for warmup + steps iterations; returns the measurements."""
    import torch
    from monai.losses import DiceFocalLoss

    from monaiseg.networks import (
        BLOODCELL_STAGE1_TRAINABLE,
        build_peft_sam2,
        freeze_except,
        parameter_report,
        trainable_parameters,
    )

    torch.manual_seed(0)
    device = torch.device(args.device)
    peft = args.worker == "peft"
    model = build_peft_sam2(args.size, args.image_size, lora=peft, decoder_adapters=peft, density_prior=peft)
    freeze_except(model, BLOODCELL_STAGE1_TRAINABLE if peft else None)
    model.train().to(device)
    report = parameter_report(model)

    size, batch = args.image_size, args.batch
    images = torch.rand(batch, 3, size, size, device=device)
    corners = torch.randint(0, size // 2, (batch, 2), device=device)
    boxes = torch.cat([corners, corners + size // 3], 1).float()
    labels = torch.zeros(batch, 1, size, size, device=device)
    for b, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
        labels[b, 0, y0:y1, x0:x1] = 1
    prompts = {"boxes": boxes}
    if peft:
        prompts["density"] = torch.rand(batch, 1, size // 4, size // 4, device=device)
    loss_fn = DiceFocalLoss(sigmoid=True)
    optimizer = torch.optim.AdamW(trainable_parameters(model), lr=1e-4)

    def step() -> float:
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(images, **prompts), labels)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        weights_mib = torch.cuda.memory_allocated(device) / 2**20
    rss_before, peak_before = current_rss_mib(), peak_rss_mib()
    for _ in range(args.warmup):
        step()
    times = [step() for _ in range(args.steps)]
    result = {
        "mode": args.worker,
        "trainable": report["trainable"],
        "total": report["total"],
        "trainable_percent": report["trainable_percent"],
        "step_s": sum(times) / len(times),
    }
    if device.type == "cuda":
        result["peak_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["peak_increase_mib"] = result["peak_mib"] - weights_mib
    else:
        result["rss_before_mib"] = rss_before
        result["peak_rss_before_mib"] = peak_before
        result["peak_mib"] = peak_rss_mib()
        result["peak_increase_mib"] = result["peak_mib"] - rss_before
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    common = [
        f"--size={args.size}",
        f"--image-size={args.image_size}",
        f"--batch={args.batch}",
        f"--steps={args.steps}",
        f"--warmup={args.warmup}",
        f"--device={args.device}",
    ]
    results = {}
    for mode in MODES:
        done = subprocess.run([sys.executable, __file__, f"--worker={mode}", *common], capture_output=True, text=True)
        if done.returncode:
            sys.exit(f"{mode} run failed:\n{done.stderr[-4000:]}")
        results[mode] = json.loads(done.stdout.strip().splitlines()[-1])

    memory = "peak CUDA memory allocated" if args.device.startswith("cuda") else "peak RSS"
    print(
        f"sam2.1 {args.size}, image {args.image_size}, batch {args.batch}, box prompts, DiceFocal, AdamW, "
        f"{args.steps} steps after {args.warmup} warm-up, device {args.device}"
    )
    for mode, r in results.items():
        print(
            f"{mode:>4}: trainable {r['trainable']:>11,} / {r['total']:,} ({r['trainable_percent']:.2f} %)  "
            f"step {r['step_s']:.3f} s  {memory} {r['peak_mib']:.0f} MiB "
            f"(+{r['peak_increase_mib']:.0f} MiB in training)"
        )
    peft, full = results["peft"], results["full"]
    print(
        f"full / PEFT: step time x{full['step_s'] / peft['step_s']:.2f}, "
        f"peak memory x{full['peak_mib'] / peft['peak_mib']:.2f}, "
        f"training memory increase x{full['peak_increase_mib'] / max(peft['peak_increase_mib'], 1e-9):.2f}"
    )
    if not args.device.startswith("cuda"):
        stale = [m for m, r in results.items() if r["peak_rss_before_mib"] >= r["peak_mib"]]
        if stale:
            print(
                f"note: for {stale} the peak RSS was reached before training (building): the increase is an upper bound"
            )


if __name__ == "__main__":
    main()
