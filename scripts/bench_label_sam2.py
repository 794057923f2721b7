"""Seconds per volume: our bidirectional SAM2 propagation (`propagate_volume`, as the medsam2
interactive-3d task runs it) vs MONAI Label 0.8.5's built-in SAM2 3D task (`Sam2InferTask`), on
the same synthetic CT volume, the same sam2.1 hiera-tiny at 1024 with the same random-init
weights, one foreground click on the middle slice. Also reports which slices each one visits.

The built-in task downloads its checkpoint and config at construction; here both are pre-placed
under its model folder with the names it expects (MONAI_SAM_MODEL_PT / MONAI_SAM_MODEL_CFG point
at them), so nothing is downloaded. Its image cache (JPEG slices) goes to a temporary folder.

    .venv/bin/python scripts/bench_label_sam2.py --slices 16 --size 128
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch


def visited(model) -> list[int]:
    """Wrap `model.propagate_in_video` to record the frames it yields; returns the record list."""
    frames: list[int] = []
    original = model.propagate_in_video

    def wrapper(*args, **kwargs):
        for out in original(*args, **kwargs):
            frames.append(int(out[0]))
            yield out

    model.propagate_in_video = wrapper
    return frames


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--slices", type=int, default=16)
    p.add_argument("--size", type=int, default=128, help="in-plane size of the synthetic volume")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-label-sam2-"))
    try:
        import sam2

        from monaiseg.data.synthetic_ct import make_synthetic_ct
        from monaiseg.inferers.propagation import propagate_volume
        from monaiseg.networks.sam2_builder import build_sam2_segmenter
        from monaiseg.prompts import ObjectPrompt
        from monaiseg.transforms.intensity import CTWindow

        model_dir = tmp / "model"
        model_dir.mkdir()
        torch.manual_seed(0)
        ours = build_sam2_segmenter("tiny", image_size=1024, checkpoint=None)
        weights = model_dir / "sam2.1_hiera_tiny.pt"
        torch.save({"model": ours.state_dict()}, weights)
        shutil.copy(Path(sam2.__file__).parent / "configs" / "sam2.1" / "sam2.1_hiera_t.yaml", model_dir)
        os.environ["MONAI_SAM_MODEL_PT"] = "https://offline.invalid/sam2.1_hiera_tiny.pt"
        os.environ["MONAI_SAM_MODEL_CFG"] = "https://offline.invalid/sam2.1_hiera_t.yaml"
        os.environ["MONAI_LABEL_DATASTORE_CACHE_PATH"] = str(tmp / "cache")

        image, _ = make_synthetic_ct((args.size, args.size, args.slices), seed=0)
        path = tmp / "ct.nii.gz"
        nib.save(nib.Nifti1Image(image.astype(np.int16), np.eye(4)), path)
        key = args.slices // 2
        i, j = args.size // 2, args.size // 2

        # ours: same weights file, loaded by our builder
        ours = build_sam2_segmenter("tiny", image_size=1024, checkpoint=str(weights), device=args.device).eval()
        volume = torch.as_tensor(CTWindow(40, 400)(torch.as_tensor(image[None], dtype=torch.float32)))
        ours_frames = visited(ours)
        prompt = [ObjectPrompt(obj_id=1, frame=key, points=((float(j), float(i)),), point_labels=(1,))]
        start = time.perf_counter()
        propagate_volume(ours, volume, prompt)
        ours_s = time.perf_counter() - start

        # built-in: model built before timing (it caches one predictor per device)
        from monailabel.sam2.infer import Sam2InferTask
        from sam2.build_sam import build_sam2_video_predictor

        task = Sam2InferTask(str(model_dir), dimension=3)
        predictor = build_sam2_video_predictor(task.config_path, task.path, device=args.device)
        from monailabel.utils.others.generic import name_to_device

        task.predictors[name_to_device(args.device)] = predictor
        theirs_frames = visited(predictor)
        start = time.perf_counter()
        task({"image": str(path), "foreground": [[i, j, key]], "device": args.device})
        theirs_s = time.perf_counter() - start

        def span(frames):
            return f"{min(frames)}..{max(frames)} ({len(set(frames))} of {args.slices})" if frames else "none"

        print(
            f"volume {args.size}x{args.size}x{args.slices}, click on slice {key}, "
            f"sam2.1 hiera-tiny at 1024, {args.device}"
        )
        print(f"ours (bidirectional, in-memory frames): {ours_s:.2f} s/volume, slices {span(ours_frames)}")
        print(f"MONAI Label Sam2InferTask 3D:           {theirs_s:.2f} s/volume, slices {span(theirs_frames)}")
        print(
            f"ratio built-in / ours: {theirs_s / ours_s:.2f}x; per covered slice: "
            f"{(theirs_s / max(len(set(theirs_frames)), 1)) / (ours_s / max(len(set(ours_frames)), 1)):.2f}x"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
