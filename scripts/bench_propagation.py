"""Benchmark our in-memory bidirectional SAM2 propagation against sam2's own predictor API.

Runs one model, volume and set of box prompts through:
  (a) ours: `propagate_volume` (lazy frames, stale outputs dropped, key-slice features shared);
  (b) the reference as MONAI Label 0.8.5 runs SAM2 3D: every slice written as a uint8 RGB
      JPEG, `init_state(folder)`, prompts, forward pass, `reset_state`, prompts, reverse pass
      (bidirectional as MedSAM2 does);
  (c) the same predictor API on our exact in-memory frames (no JPEG): must equal (a).
The masks of each pass are merged into labels the way `propagate_volume` merges them.
`--profile` splits each method's time into the image encoder, memory attention, memory encoder, prompt
encoder + mask decoder and the rest (module forward hooks; calls counted), per slice.

    .venv/bin/python scripts/bench_propagation.py [--threads 1] [--depth 40 --objects 1 ...] [--profile]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import os
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # sam2 shows a progress bar per pass

import numpy as np
import torch
from PIL import Image

from monaiseg.data import make_synthetic_ct
from monaiseg.inferers.propagation import LazyFrames, memory_window, new_tracking_state, owns_frame, propagate_volume
from monaiseg.metrics import binary_dice
from monaiseg.networks.sam2_builder import build_sam2_segmenter
from monaiseg.prompts import ObjectPrompt, key_slice, mask_box
from monaiseg.transforms.intensity import CTWindow


def make_case(size: int, depth: int, objects: int, seed: int = 0):
    """A windowed synthetic CT volume (1, H, W, D) in [0, 1], its labels and one box per object."""
    image, label = make_synthetic_ct((size, size, depth), seed=seed)
    windowed = CTWindow(40, 400)(image.astype(np.float32))  # a MetaTensor: keep plain values
    volume = torch.tensor(np.asarray(windowed), dtype=torch.float32)[None]
    prompts = []
    for value in sorted(int(v) for v in np.unique(label) if v > 0)[:objects]:
        mask = label == value
        k = key_slice(mask)
        prompts.append(ObjectPrompt(obj_id=value, frame=k, box=mask_box(mask[..., k])))
    return volume, label, prompts


def write_jpeg_slices(volume: torch.Tensor, folder: Path) -> None:
    """Slices of a (1, H, W, D) volume in [0, 1] as uint8 RGB JPEGs 00000.jpg, ... (as MONAI Label does)."""
    grey = np.rint(volume[0].cpu().numpy() * 255).astype(np.uint8)
    for k in range(grey.shape[-1]):
        Image.fromarray(grey[..., k]).convert("RGB").save(folder / f"{k:05d}.jpg")


@torch.inference_mode()
def memory_state(model, volume: torch.Tensor) -> dict:
    """What `init_state` builds, but over our in-memory frames stacked into one tensor."""
    frames = LazyFrames(volume, model)
    state = new_tracking_state(model, frames, volume.shape[1], volume.shape[2], offload=True)
    state["images"] = torch.stack([frames[k].cpu() for k in range(len(frames))])
    model._get_image_feature(state, frame_idx=0, batch_size=1)  # init_state's warm-up
    return state


@torch.inference_mode()
def reference_propagate(model, state: dict, prompts, stats: dict | None = None) -> torch.Tensor:
    """sam2's predictor API: prompts, forward pass, reset, prompts, reverse pass; merged as ours."""
    keys_per_obj: dict[int, list[int]] = {}
    for p in prompts:
        keys_per_obj.setdefault(p.obj_id, []).append(p.frame)
    labels = torch.zeros((state["video_height"], state["video_width"], state["num_frames"]), dtype=torch.uint8)
    max_stored = 0
    starts = {False: min(p.frame for p in prompts), True: max(p.frame for p in prompts)}
    for reverse in (False, True):
        if reverse:
            model.reset_state(state)
        for p in prompts:
            model.add_new_points_or_box(state, frame_idx=p.frame, obj_id=p.obj_id, box=np.asarray(p.box, np.float32))
        for frame, obj_ids, masks in model.propagate_in_video(state, start_frame_idx=starts[reverse], reverse=reverse):
            logits = masks[:, 0].float().cpu()
            own = [i for i, obj in enumerate(obj_ids) if owns_frame(keys_per_obj[obj], frame, reverse)]
            if own:
                best, winner = logits[own].max(dim=0)
                ids = torch.tensor([obj_ids[i] for i in own], dtype=labels.dtype)[winner]
                fg = best > 0
                if reverse:
                    fg &= labels[..., frame] == 0
                labels[..., frame][fg] = ids[fg]
            stored = sum(len(o["non_cond_frame_outputs"]) for o in state["output_dict_per_obj"].values())
            max_stored = max(max_stored, stored)
    if stats is not None:
        stats["max_stored_frames"] = max_stored
    return labels


def run_ours(model, volume, prompts, stats):
    return propagate_volume(model, volume, prompts, stats=stats)


def run_jpeg(model, volume, prompts, stats):
    with tempfile.TemporaryDirectory() as folder:
        write_jpeg_slices(volume, Path(folder))
        state = model.init_state(video_path=folder)
    stats["frames_mib"] = state["images"].numel() * state["images"].element_size() / 2**20
    return reference_propagate(model, state, prompts, stats)


def run_memory(model, volume, prompts, stats):
    state = memory_state(model, volume)
    stats["frames_mib"] = state["images"].numel() * state["images"].element_size() / 2**20
    return reference_propagate(model, state, prompts, stats)


PARTS = {  # profiled parts: SAM2Base submodules, called one at a time (none inside another)
    "image encoder": ("image_encoder",),
    "memory attention": ("memory_attention",),
    "memory encoder": ("memory_encoder",),
    "prompt enc. + mask decoder": ("sam_prompt_encoder", "sam_mask_decoder"),
}


class ModuleTimes:
    """Seconds and calls of each of `PARTS` inside a `with` block, from forward pre/post hooks (CUDA synced)."""

    def __init__(self, model):
        self.model = model
        self.seconds = dict.fromkeys(PARTS, 0.0)
        self.calls = dict.fromkeys(PARTS, 0)

    def __enter__(self):
        self.handles = []
        for part, names in PARTS.items():
            for name in names:
                module = getattr(self.model, name)
                self.handles.append(module.register_forward_pre_hook(self._start))
                self.handles.append(module.register_forward_hook(self._stop(part)))
        return self

    def _start(self, module, args):
        _sync(module)
        module._bench_start = time.perf_counter()

    def _stop(self, part):
        def hook(module, args, output):
            _sync(module)
            self.seconds[part] += time.perf_counter() - module._bench_start
            self.calls[part] += 1

        return hook

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()


def _sync(module) -> None:
    if next(module.parameters()).is_cuda:
        torch.cuda.synchronize()


class PeakMemory:
    """Peak memory growth (MiB) inside a `with` block: CUDA allocations, else process RSS."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.mib = float("nan")

    def __enter__(self):
        gc.collect()
        _trim_heap()
        if self.cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
            return self
        self.start, self.peak = _rss(), 0
        try:  # Linux: reset the process's peak RSS (VmHWM)
            Path("/proc/self/clear_refs").write_text("5")
            self.sampler = None
        except OSError:  # elsewhere: sample RSS
            self.sampler = threading.Thread(target=self._sample, daemon=True)
            self.running = True
            self.sampler.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, _rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.mib = (torch.cuda.max_memory_allocated() - self.start) / 2**20
        elif self.sampler is None:
            self.mib = (_status_kib("VmHWM") * 1024 - self.start) / 2**20
        else:
            self.running = False
            self.sampler.join()
            self.mib = (self.peak - self.start) / 2**20


def _trim_heap() -> None:
    """Give freed heap memory back to the OS (glibc), so RSS growth is not hidden by reuse."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _rss() -> int:
    try:
        return _status_kib("VmRSS") * 1024
    except OSError:
        import psutil

        return psutil.Process().memory_info().rss


METHODS = {
    "a": ("ours (propagate_volume)", run_ours),
    "b": ("reference, JPEG folder + init_state", run_jpeg),
    "c": ("reference, in-memory frames", run_memory),
}


def print_profile(parts: dict, depth: int) -> None:
    """Seconds per slice of each part (and its share, calls) for each method's best run; "rest" = the remainder."""
    print("\nprofile of the best run: s/slice (share, calls)")
    print(f"  {'part':28s}" + "".join(f"{'(' + m + ')':>24s}" for m, p in parts.items() if p))
    rows = list(PARTS) + ["rest", "total"]
    for row in rows:
        cells = []
        for profiled in filter(None, parts.values()):
            total, split = profiled
            seconds = {"total": total, "rest": total - sum(split.seconds.values())}.get(row, split.seconds.get(row))
            calls = f", {split.calls[row]}" if row in split.calls else ""
            cells.append(f"{seconds / depth:.3f} ({100 * seconds / total:4.1f} %{calls})".rjust(24))
        print(f"  {row:28s}" + "".join(cells))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="tiny", help="sam2.1 size: tiny, small, base_plus, large")
    parser.add_argument("--image_size", type=int, default=512)
    parser.add_argument("--shape", type=int, default=128, help="slice height and width")
    parser.add_argument("--depth", type=int, default=16, help="number of slices")
    parser.add_argument("--objects", type=int, default=2, help="objects prompted (synthetic labels in order)")
    parser.add_argument("--checkpoint", default=None, help="official sam2.1 .pt (default: random init)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--repeats", type=int, default=2, help="runs per method, interleaved; best time kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (0: torch default); 1 is steadier when other jobs share the cores",
    )
    parser.add_argument("--time_memory_ref", action="store_true", help="repeat (c) too (default: run it once)")
    parser.add_argument("--profile", action="store_true", help="split each method's time by model part")
    args = parser.parse_args(argv)

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_sam2_segmenter(args.size, args.image_size, args.checkpoint, device=device).eval()
    volume, truth, prompts = make_case(args.shape, args.depth, args.objects, args.seed)
    depth = volume.shape[-1]
    print(
        f"sam2.1 {args.size} @ {args.image_size}, {'random init' if args.checkpoint is None else args.checkpoint}, "
        f"{device}, {torch.get_num_threads()} threads; volume {tuple(volume.shape[1:])}, "
        f"memory window {memory_window(model)}"
    )
    for p in prompts:
        print(f"  object {p.obj_id}: key slice {p.frame}, box {p.box}")

    times = {m: [] for m in METHODS}
    memory = {m: [] for m in METHODS}
    labels, stats = {}, {m: {} for m in METHODS}
    parts = dict.fromkeys(METHODS)  # the profile of each method's best run
    for r in range(args.repeats):
        order = list(METHODS)[r % 3 :] + list(METHODS)[: r % 3]
        for m in order:
            if m == "c" and r > 0 and not args.time_memory_ref:
                continue
            with PeakMemory(device) as peak, ModuleTimes(model) if args.profile else contextlib.nullcontext() as split:
                start = time.perf_counter()
                out = METHODS[m][1](model, volume, prompts, stats[m])
                if device.type == "cuda":
                    torch.cuda.synchronize()
                seconds = time.perf_counter() - start
            if split is not None and seconds <= min(times[m], default=seconds):
                parts[m] = (seconds, split)
            times[m].append(seconds)
            memory[m].append(peak.mib)
            labels[m] = out.numpy()
            print(f"  repeat {r + 1} ({m}) {METHODS[m][0]}: {seconds:.2f} s, peak +{peak.mib:.0f} MiB")
            del out
            gc.collect()

    best = {m: min(t) for m, t in times.items() if t}
    print("\nresults (best of repeats)")
    for m, seconds in best.items():
        print(
            f"  ({m}) {METHODS[m][0]:38s} {seconds / depth:.3f} s/slice  {seconds:6.2f} s  "
            f"peak +{min(memory[m]):.0f} MiB  max stored frame outputs {stats[m]['max_stored_frames']}"
        )
    if args.profile:
        print_profile(parts, depth)
    speedup = best["b"] / best["a"]
    print(f"  speedup (b)/(a): {speedup:.2f}x   (c)/(a): {best['c'] / best['a']:.2f}x")
    ids = [p.obj_id for p in prompts]
    identical = bool(np.array_equal(labels["a"], labels["c"]))
    for obj in ids:
        a, b, c = (labels[m] == obj for m in "abc")
        print(
            f"  object {obj}: dice(a, b) {binary_dice(a, b):.4f}  dice(a, c) {binary_dice(a, c):.4f}  "
            f"voxels a/b/c {a.sum()}/{b.sum()}/{c.sum()}  dice vs truth a {binary_dice(a, truth == obj):.3f} "
            f"b {binary_dice(b, truth == obj):.3f}"
        )
    print(f"  (a) == (c) label volumes identical: {identical}")
    print(
        f"  max frame outputs held: ours {stats['a']['max_stored_frames']}, "
        f"reference {stats['b']['max_stored_frames']} (JPEG) / {stats['c']['max_stored_frames']} (in memory)"
    )
    one_frame = 3 * args.image_size**2 * 4 / 2**20
    print(
        f"  input frames held: ours one at a time ({one_frame:.0f} MiB), reference all "
        f"({stats['b']['frames_mib']:.0f} MiB)"
    )
    dices = ", ".join(f"{binary_dice(labels['a'] == o, labels['b'] == o):.3f}" for o in ids)
    print(
        f"SUMMARY: {depth} slices, {len(ids)} objects, {device}: ours {best['a'] / depth:.3f} s/slice vs "
        f"JPEG reference {best['b'] / depth:.3f} s/slice = {speedup:.2f}x; peak +{min(memory['a']):.0f} vs "
        f"+{min(memory['b']):.0f} MiB; dice(a,b) [{dices}]; (a)==(c) {identical}; stored frames "
        f"{stats['a']['max_stored_frames']} vs {stats['b']['max_stored_frames']}"
    )


if __name__ == "__main__":
    main()
