"""Training-epoch time with and without the image-embedding cache (SurgicalSAM-style training).

A SAM model (`build_sam_segmenter`, random weights) with its image encoder frozen; the mask
decoder is trained (Adam, prompt-free decoding, MONAI DiceCELoss against the instrument masks of
synthetic surgical frames, `make_synthetic_surgical_frame`). One epoch over the same frames is
timed three ways: the encoder run on every batch (no cache), with an empty cache (cold: encodes
and writes every frame) and with the filled cache (warm: reads every frame). Printed: wall-clock
and CPU seconds per epoch (CPU time is steadier on a shared machine), the speed-up no-cache /
warm, and the cache's entries and size.

    python scripts/bench_embedding_cache.py [--variant vit_l] [--image-size 256] [--depth N]
        [--num-images 8] [--batch 4] [--cache-dir DIR]

Defaults (ViT-L at 256 px, 8 frames) take about 140 s of CPU time, so 1-2 minutes on 2 idle CPU
cores (5.5 min measured on 2 cores shared with other jobs, load ~7). The speed-up is the
encoder's cost over the decoder step's: ViT-L at 256 px gave 16.9x and 25.7x (CPU time, two
runs); ViT-B at 256 px 3-5x (its encoder costs only a few decoder steps at this size).
SurgicalSAM's ViT-H at 1024 px costs far more per frame than its decoder step.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

from monaiseg.data.embedding_cache import EmbeddingCache
from monaiseg.data.synthetic_surgical import make_synthetic_surgical_frame
from monaiseg.networks.sam_builder import build_sam_segmenter


def synthetic_batches(num_images: int, size: int, batch: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Frames (B, 3, S, S) in [0, 1] and instrument masks (B, 1, S, S), 1-3 instruments each."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for _ in range(num_images):
        classes = list(rng.choice(np.arange(1, 8), size=int(rng.integers(1, 4)), replace=False))
        poses = [
            (rng.uniform(0.2, 0.8), rng.uniform(-0.6, 0.6) + np.pi * (k % 2), rng.uniform(0.35, 0.6))
            for k in range(len(classes))
        ]
        image, mask = make_synthetic_surgical_frame(classes, size, size, rng, poses)
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255)
        masks.append(torch.from_numpy(mask > 0)[None].float())
    return [
        (torch.stack(images[i : i + batch]), torch.stack(masks[i : i + batch])) for i in range(0, num_images, batch)
    ]


def run_epoch(model, optimizer, loss_fn, batches, cache: EmbeddingCache | None) -> tuple[float, float]:
    """Wall-clock and CPU seconds (all threads of this process) of one epoch: embeddings (encoder
    or cache), decoder forward / backward / step."""
    start, cpu = time.perf_counter(), time.process_time()
    for images, masks in batches:
        inputs = model.normalize_images(images)
        if cache is None:
            with torch.no_grad():
                embeddings = model.image_encoder(inputs)
        else:
            embeddings = cache.encode(inputs)
        sparse, dense = model.encode_prompts(tuple(images.shape[-2:]))
        low_res, _ = model.decode(embeddings, sparse.expand(len(images), -1, -1), dense.expand(len(images), -1, -1, -1))
        logits = F.interpolate(low_res, size=images.shape[-2:], mode="bilinear", align_corners=False)
        loss = loss_fn(logits, masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start, time.process_time() - cpu


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="vit_l", choices=("vit_b", "vit_l", "vit_h"))
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--depth", type=int, default=None, help="encoder depth (default: the variant's)")
    parser.add_argument("--num-images", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=None, help="cache folder (default: a temporary one, removed after)")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    model = build_sam_segmenter(args.variant, args.image_size, checkpoint=None, encoder_depth=args.depth)
    model.image_encoder.requires_grad_(False)
    model.prompt_encoder.requires_grad_(False)
    model.mask_decoder.train()
    optimizer = torch.optim.Adam(model.mask_decoder.parameters(), lr=1e-4)
    loss_fn = DiceCELoss(sigmoid=True)
    batches = synthetic_batches(args.num_images, args.image_size, args.batch, args.seed)
    run_epoch(model, optimizer, loss_fn, batches[:1], None)  # warm-up: one-off allocations

    root = Path(args.cache_dir or tempfile.mkdtemp(prefix="embedding_cache_"))
    try:
        cache = EmbeddingCache(
            root,
            model.image_encoder,
            {"variant": args.variant, "image_size": args.image_size, "depth": args.depth, "normalize": "imagenet"},
        )
        times = {
            "no cache": run_epoch(model, optimizer, loss_fn, batches, None),
            "cold cache": run_epoch(model, optimizer, loss_fn, batches, cache),
            "warm cache": run_epoch(model, optimizer, loss_fn, batches, cache),
        }
        summary = cache.summary()
    finally:
        if args.cache_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    depth = args.depth or "default"
    print(
        f"SAM {args.variant} (depth {depth}) at {args.image_size} px, {args.num_images} frames, batch {args.batch}, "
        f"{torch.get_num_threads()} threads"
    )
    for name, (wall, cpu) in times.items():
        print(f"  {name:>10}: {wall:7.2f} s/epoch wall-clock, {cpu:7.2f} s CPU")
    ratio = times["no cache"][0] / times["warm cache"][0]
    cpu_ratio = times["no cache"][1] / times["warm cache"][1]
    print(f"  speed-up no cache / warm cache: {ratio:.1f}x wall-clock, {cpu_ratio:.1f}x CPU time")
    print(
        f"  cache: {summary['entries']} entries, {summary['size_bytes'] / 2**20:.2f} MiB "
        f"({summary['size_bytes'] / max(summary['entries'], 1) / 2**10:.0f} KiB per frame)"
    )
    return {"seconds": times, "ratio": ratio, "cpu_ratio": cpu_ratio, **summary}


if __name__ == "__main__":
    main()
