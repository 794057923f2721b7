"""Section `label_3d`: our MONAI Label app's 3D task (medsam2 bundle) against MONAI Label's own SAM2 task
(`monailabel.sam2.infer.Sam2InferTask`, 3D), both in-process on one synthetic CT (512 x 512 x 96; dry run
32 x 32 x 4 with sam2.1 tiny at 32) with the same points on one liver slice and the same sam2.1 weights
(MONAI Label's default size, large): seconds of a first and a next request, per slice, peak GPU memory, Dice
to each other and to the truth."""

from __future__ import annotations

import copy
import os
import shutil
import traceback
from pathlib import Path

import numpy as np
import torch

from .common import REPO, Clock, dice

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
    return {
        "first_request_s": rows[0]["seconds"],
        "next_request_s": rows[-1]["seconds"],
        "first_s_per_slice": round(rows[0]["seconds"] / depth, 4),
        "next_s_per_slice": round(rows[-1]["seconds"] / depth, 4),
        "first_peak_mib": rows[0]["peak_mib"],
        "next_peak_mib": rows[-1]["peak_mib"],
        "label_shape": list(first.shape),
        "labelled_slices": int(first.reshape(-1, first.shape[-1]).any(0).sum()),
        "dice_to_truth": dice(first, truth),
        "dice_to_truth_from_prompt_slice": dice(first[..., k:], truth[..., k:]),
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
            result["dice_ours_vs_monai_label"] = dice(a, b)
            result["dice_ours_vs_monai_label_from_prompt_slice"] = dice(a[..., k:], b[..., k:])
        keys = ("first_request_s", "next_request_s", "first_peak_mib", "next_peak_mib")
        result["ratio_ours_to_theirs"] = {
            key: round(result["ours"][key] / theirs[key], 3) for key in keys if result["ours"][key] and theirs[key]
        }
    return result
