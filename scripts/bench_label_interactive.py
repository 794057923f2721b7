"""Interactive annotation on the MONAI Label server, end to end through `MONAILabelClient`: one run,
three figures.

1. Clicks on one 2D image: the first click (image encoder + decoder) against the median of the next
   `--clicks` clicks (decoder only: the embedding is reused), for sam_med2d with tiny random weights,
   sam_med2d at its default size (ViT-B 256, random weights; `--no-full-sam-med2d` skips it) and
   lite_medsam with its released weights (when the bundle is there; on a real polyp frame when the
   shared data is there). Client wall time and the server's own `latencies.total`; also the model
   alone (in this process: encoder + decoder against decoder on the reused embedding), and the next
   click's round trip over the decoder's own time (goal for lite_medsam: <= 0.2 s and <= 2x), the
   decoder timed both alone here and inside the same requests by the server (`latencies.decoder`).
2. A correction on one slice of a propagated volume against propagating the whole volume again with
   all prompts (medsam2 tiny, hiera-tiny at 128, a `--slices`-slice synthetic CT): seconds, ratio, and
   how far the labels agree outside the slices the correction re-tracked. The same for a box-carry
   correction (lite_medsam with its released weights, `--carry-slices` slices): a box on one slice
   against carrying both boxes again, both timed with every slice's embedding cached (one untimed
   carry of both boxes first), and the first carry (cold). Without the memory figure the server's
   cache holds at least 1024 MiB, so no embedding of the volume is evicted between the runs.
3. DeepLesion (`--parts lesion`, when the shared data is there): lite_medsam's box carry of the first
   13-slice 512 x 512 lesion volume (3D ROI over the lesion's slices): the first carry (cold), the
   same carry again with every slice embedding cached (goal <= 2 s), and a one-slice box correction.
4. Server memory: RSS after clicks on `--images` different images against `--cache-mib` plus the
   model size (sam_med2d with a tiny encoder at 1024, so each embedding holds 4 MiB).

    .venv/bin/python scripts/bench_label_interactive.py --slices 64 --images 50 --cache-mib 64
    .venv/bin/python scripts/bench_label_interactive.py --parts clicks,lesion --no-full-sam-med2d

The server and this process run OpenMP with OMP_WAIT_POLICY=PASSIVE (`label serve` sets it), so the
decoder alone and the click are timed alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `label serve` sets it for the server: before torch loads

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
POLYPS, DEEPLESION = SHARED / "endotect_polyp" / "images", SHARED / "deeplesion_ct"
TINY_SAM = {"image_size": 64, "encoder_depth": 2, "encoder_embed_dim": 64, "encoder_num_heads": 2}


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (MiB)."""
    import psutil

    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    out = call()
    return time.perf_counter() - start, out


def write_png(path: Path, seed: int, size: int = 256) -> Path:
    rng = np.random.default_rng(seed)
    grid = np.linspace(0, 1, size)
    disc = ((grid[:, None] - 0.5) ** 2 + (grid[None] - 0.45) ** 2 < 0.08).astype(float)
    image = 0.6 * disc[..., None] + 0.4 * rng.random((size, size, 3))
    Image.fromarray((image * 255).astype(np.uint8)).save(path)
    return path


def clicks(client, model: str, image_id: str, warm_id: str, count: int, box: list[int] | None) -> dict:
    """First prompt on `image_id` (after a warm-up request on another image) and `count` more: boxes
    shifted by n pixels from `box`, else foreground clicks."""
    if box is not None:
        prompt = lambda n: {"roi": [box[0] + n, box[1], box[2] + n, box[3]]}  # noqa: E731
    else:
        prompt = lambda n: {"foreground": [[120 + n, 115]]}  # noqa: E731
    client.infer(model, warm_id, prompt(0))  # the network is built and loaded here, not in the first click
    first_s, (_, first) = timed(lambda: client.infer(model, image_id, prompt(0)))
    walls, servers, decoders = [], [], []
    for n in range(1, count + 1):
        wall, (_, result) = timed(lambda n=n: client.infer(model, image_id, prompt(n)))
        walls.append(wall)
        servers.append(result["latencies"]["total"])
        decoders.append(result["latencies"].get("decoder", float("nan")))
    decoder = statistics.median(decoders)  # the server's prompt encoder + mask decoder in these requests
    return {
        "server_decoder_median_s": round(decoder, 4),
        "next_over_server_decoder": round(statistics.median(walls) / decoder, 2),
        "first_s": round(first_s, 3),
        "next_median_s": round(statistics.median(walls), 3),
        "ratio": round(first_s / statistics.median(walls), 1),
        "server_first_s": first["latencies"]["total"],
        "server_next_median_s": statistics.median(servers),
        "server_ratio": round(first["latencies"]["total"] / statistics.median(servers), 1),
    }


def model_only(bundle: Path, overrides: list[str], repeats: int, image_file: Path, box: list[int]) -> dict:
    """In this process: the bundle's network on the clicked image (as (1, 3, H, W) in [0, 1]),
    encoder + decoder against the decoder on the reused embedding (`EmbeddingReuse`)."""
    from monai.bundle import ConfigParser

    from monaiseg.data.memory_cache import MemoryLRU
    from monaiseg.inferers.embedding_reuse import EmbeddingReuse
    from monaiseg.networks.checkpoint import load_model_weights

    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / f) for f in ["inference.json", *overrides]])
    parser["bundle_root"] = str(bundle)
    if (bundle / "models" / "model.pt").is_file():
        for key in ("foundation_checkpoint", "checkpoint"):
            if key in parser:
                parser[key] = None
    network = parser.get_parsed_content("network_def").eval()
    load_model_weights(network, bundle / "models" / "model.pt" if (bundle / "models" / "model.pt").is_file() else None)
    pixels = np.asarray(Image.open(image_file).convert("RGB"), dtype=np.float32) / 255
    image = torch.from_numpy(pixels).permute(2, 1, 0)[None].contiguous()  # (1, 3, I, J), as MONAI loads it
    box = torch.tensor([box], dtype=torch.float32)
    with torch.no_grad():
        network(image, boxes=box)  # warm-up
        full = statistics.median(timed(lambda: network(image, boxes=box))[0] for _ in range(repeats))
        reuse = EmbeddingReuse(network, MemoryLRU(1 << 30), identity="bench")
        reuse(image, boxes=box)
        decode = statistics.median(timed(lambda: reuse(image, boxes=box))[0] for _ in range(repeats))
    return {"encoder_and_decoder_s": round(full, 4), "decoder_s": round(decode, 4), "ratio": round(full / decode, 1)}


def correction_vs_full(client, model: str, image_id: str, depth: int) -> dict:
    """Propagate (medsam2) or carry (lite_medsam), correct one slice, and run again with all prompts."""
    key, fix = depth // 2, depth // 2 + depth // 8
    spleen = {"label": "spleen", "roi": [34, 16, 52, 36, key, key]}
    first_s, (_, start) = timed(lambda: client.infer(model, image_id, {"interaction": True, "objects": [spleen]}))
    interaction = start["interaction"]["id"]
    box = [32, 14, 54, 38, fix, fix]
    correct = {"action": "correct", "interaction": interaction, "label": "spleen", "roi": box}
    everything = {"objects": [spleen, {**spleen, "roi": box}]}
    if model != "medsam2":  # box carry: the embeddings of every slice either run needs are cached first
        client.infer(model, image_id, everything)
    correct_s, (corrected_file, corrected) = timed(lambda: client.infer(model, image_id, correct))
    full_s, (full_file, _) = timed(lambda: client.infer(model, image_id, everything))
    changed = corrected["interaction"]["changed_slices"]
    a, b = np.asarray(nib.load(corrected_file).dataobj), np.asarray(nib.load(full_file).dataobj)
    outside = [k for k in range(depth) if k not in changed]
    same = float((a[..., outside] == b[..., outside]).mean()) if outside else 1.0
    fg_a, fg_b = a[..., outside] > 0, b[..., outside] > 0
    dice = 2 * (fg_a & fg_b).sum() / max(int(fg_a.sum() + fg_b.sum()), 1)
    return {
        "slices": depth,
        "propagate_s": round(first_s, 2),
        "correction_s": round(correct_s, 2),
        "full_again_s": round(full_s, 2),
        "ratio": round(full_s / correct_s, 1),
        "ratio_to_first": round(first_s / correct_s, 1),
        "retracked_slices": len(changed),
        "all_voxels_equal": round(float((a == b).mean()), 4),
        "outside_voxels_equal": round(same, 4),
        "outside_dice": round(float(dice), 4),
        "session_mib": round(corrected["interaction"]["bytes"] / 2**20, 2),
    }


def lesion_volume(path: Path) -> tuple[list[int], list[int]] | None:
    """The first DeepLesion crop written to `path` as (X, Y, Z) HU (lite_medsam's CT window maps it back
    to the windowed values) -> (its 3D ROI over the lesion's slices, a box on the slice past the middle),
    None without the shared data."""
    files = sorted(DEEPLESION.glob("*.npz"))
    if not files:
        return None
    with np.load(files[0]) as case:
        images, truth = case["imgs"], case["gts"] > 0
    hu = np.round(-160 + images.astype(np.float32) * 400 / 255).astype(np.int16).transpose(2, 1, 0)
    nib.save(nib.Nifti1Image(hu, np.diag([0.8, 0.8, 5.0, 1.0])), path)
    xs, ys, zs = np.nonzero(truth.transpose(2, 1, 0))
    roi = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()), int(zs.min()), int(zs.max())]
    fix = (roi[4] + roi[5]) // 2 + 1
    return roi, [roi[0] - 2, roi[1] - 2, roi[2] + 2, roi[3] + 2, fix, fix]


def lesion_carry(client, image_id: str, roi: list[int], fix: list[int]) -> dict:
    """lite_medsam box carry of the lesion: first (cold), again from cached embeddings, a one-slice correction."""
    first_s, (_, start) = timed(lambda: client.infer("lite_medsam", image_id, {"label": "lesion", "roi": roi}))
    again = [timed(lambda: client.infer("lite_medsam", image_id, {"label": "lesion", "roi": roi}))[0] for _ in range(3)]
    session = {"label": "lesion", "roi": roi, "interaction": True}
    _, (_, started) = timed(lambda: client.infer("lite_medsam", image_id, session))
    correct = {"action": "correct", "interaction": started["interaction"]["id"], "label": "lesion", "roi": fix}
    correct_s, (_, corrected) = timed(lambda: client.infer("lite_medsam", image_id, correct))
    return {
        "slices": len(start.get("slices", [])),
        "first_carry_s": round(first_s, 2),
        "recarry_cached_s": round(statistics.median(again), 2),
        "correction_s": round(correct_s, 2),
        "retracked_slices": len(corrected["interaction"]["changed_slices"]),
        "ratio": round(first_s / statistics.median(again), 1),
        "within_2s": statistics.median(again) <= 2.0,
    }


def memory(client, pid: int, data: Path, images: int, cache_mib: float, model_mib: float) -> dict:
    """RSS after one click on each of `images` different images (sam_med2d_mem: 4 MiB embeddings)."""
    write_png(data / "mem_warm.png", seed=999)
    client.upload_image(str(data / "mem_warm.png"), "mem_warm")
    client.infer("sam_med2d_mem", "mem_warm", {"foreground": [[100, 100]]})
    before = rss_mib(pid)
    for n in range(images):
        client.upload_image(str(write_png(data / f"mem_{n}.png", seed=1000 + n)), f"mem_{n}")
        client.infer("sam_med2d_mem", f"mem_{n}", {"foreground": [[100, 100]]})
        if n == images // 2:
            half = rss_mib(pid)
    after = rss_mib(pid)
    cache = client.info()["embedding_cache"]
    return {
        "images": images,
        "rss_after_first_mib": round(before, 1),
        "rss_after_half_mib": round(half, 1),
        "rss_after_all_mib": round(after, 1),
        "growth_mib": round(after - before, 1),
        "cache_mib": round(cache["bytes"] / 2**20, 1),
        "bound_mib": cache_mib,
        "model_mib": round(model_mib, 1),
        "evictions": cache["evictions"],
        "within_bound_plus_model": after - before <= cache_mib + model_mib,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--slices", type=int, default=64)
    p.add_argument("--carry-slices", type=int, default=32, help="slices of the lite_medsam box-carry volume")
    p.add_argument("--clicks", type=int, default=10)
    p.add_argument("--images", type=int, default=50)
    p.add_argument("--cache-mib", type=float, default=64)
    p.add_argument("--no-full-sam-med2d", action="store_true", help="skip sam_med2d at its default size")
    p.add_argument("--parts", default="clicks,correction,carry,lesion,memory", help="which figures (comma-separated)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()

    from monailabel.client import MONAILabelClient

    from monaiseg.data.synthetic_ct import make_synthetic_ct
    from monaiseg.label.server import LabelServer, tiny_copy, tiny_overrides

    tmp = Path(tempfile.mkdtemp(prefix="bench-label-interactive-"))
    bundles, data = tmp / "bundles", tmp / "data"
    data.mkdir()
    tiny_copy(REPO / "bundles" / "sam_med2d", bundles / "sam_med2d")
    tiny_copy(REPO / "bundles" / "sam_med2d", bundles / "sam_med2d_mem", {"image_size": 1024})
    tiny_copy(REPO / "bundles" / "medsam2", bundles / "medsam2")
    if not args.no_full_sam_med2d:
        default = dict.fromkeys(TINY_SAM) | {"image_size": 256}
        tiny_copy(REPO / "bundles" / "sam_med2d", bundles / "sam_med2d_b", default)
    lite = (REPO / "bundles" / "lite_medsam" / "configs" / "metadata.json").is_file()
    if lite:  # its released weights: no model.pt, no tiny.json
        tiny_copy(REPO / "bundles" / "lite_medsam", bundles / "lite_medsam", weights=False)
    image, _ = make_synthetic_ct((64, 64, args.slices), seed=0)
    nib.save(nib.Nifti1Image(image.astype(np.int16), np.diag([0.8, 0.8, 2.5, 1.0])), data / "ct.nii.gz")
    image, _ = make_synthetic_ct((64, 64, args.carry_slices), seed=0)
    nib.save(nib.Nifti1Image(image.astype(np.int16), np.diag([0.8, 0.8, 2.5, 1.0])), data / "carry.nii.gz")
    mem_weights = bundles / "sam_med2d_mem" / "models" / "model.pt"
    model_mib = mem_weights.stat().st_size / 2**20

    figures: dict = {}
    parts = args.parts.split(",")
    options = ["--cache-mib", str(args.cache_mib if "memory" in parts else max(args.cache_mib, 1024))]
    polyps = sorted(POLYPS.glob("*.jpg"))[:2]
    lesion = lesion_volume(data / "lesion.nii.gz") if "lesion" in parts and lite else None
    with LabelServer(tmp / "studies", [bundles], tiny_overrides(bundles), options=options) as server:
        client = MONAILabelClient(server.url, tmpdir=str(tmp), client_id="bench")
        for name, seed in (("warm", 1), ("click", 2)):
            client.upload_image(str(write_png(data / f"{name}.png", seed)), name)
        for name, path in zip(("polyp_warm", "polyp"), polyps):
            client.upload_image(str(path), name)
        if lesion is not None:
            client.upload_image(str(data / "lesion.nii.gz"), "lesion")
        client.upload_image(str(data / "ct.nii.gz"), "ct")
        client.upload_image(str(data / "carry.nii.gz"), "carry")
        models = [("sam_med2d", False)] + ([] if args.no_full_sam_med2d else [("sam_med2d_b", False)])
        models = (models + ([("lite_medsam", True)] if lite else [])) if "clicks" in parts else []
        for model, boxed in models:
            real = boxed and len(polyps) == 2  # lite_medsam on a polyp frame, else the drawn disc
            image_id, warm_id, image_file = ("polyp", "polyp_warm", polyps[-1]) if real else ("click", "warm", None)
            image_file = image_file or data / "click.png"
            box = ([150, 120, 350, 330] if real else [60, 70, 180, 190]) if boxed else None
            figures[f"clicks {model}"] = clicks(client, model, image_id, warm_id, args.clicks, box)
            overrides = ["images_2d.json"] if boxed else ["tiny.json", "label_test.json"]
            overrides = [o for o in overrides if (bundles / model / "configs" / o).is_file()]
            only = model_only(bundles / model, overrides, args.clicks, image_file, box or [60, 70, 180, 190])
            click = figures[f"clicks {model}"]
            only["next_click_over_decoder"] = round(click["next_median_s"] / only["decoder_s"], 2)
            figures[f"model only {model}"] = only
            print(model, json.dumps(click), json.dumps(only), flush=True)
        if "correction" in parts:
            figures["correction medsam2"] = correction_vs_full(client, "medsam2", "ct", args.slices)
            print("medsam2", json.dumps(figures["correction medsam2"]), flush=True)
        if "carry" in parts and lite:
            figures["correction lite_medsam"] = correction_vs_full(client, "lite_medsam", "carry", args.carry_slices)
            print("lite_medsam", json.dumps(figures["correction lite_medsam"]), flush=True)
        if lesion is not None:
            figures["lesion lite_medsam"] = lesion_carry(client, "lesion", *lesion)
            print("lesion", json.dumps(figures["lesion lite_medsam"]), flush=True)
        if "memory" in parts:
            figures["memory"] = memory(client, server.process.pid, data, args.images, args.cache_mib, model_mib)
            print("memory", json.dumps(figures["memory"]), flush=True)

    print("\nratios (goal: clicks >= 10x; lite_medsam's next click <= 2x its decoder; correction >= 3x;")
    print("        DeepLesion re-carry from cached embeddings <= 2 s; memory within bound + model)")
    for name, values in figures.items():
        keys = (
            "ratio",
            "server_ratio",
            "next_click_over_decoder",
            "next_over_server_decoder",
            "next_median_s",
            "recarry_cached_s",
            "within_2s",
            "ratio_to_first",
            "outside_dice",
            "all_voxels_equal",
            "within_bound_plus_model",
        )
        keys = [k for k in keys if k in values]
        print(f"  {name:28s} " + "  ".join(f"{k}={values[k]}" for k in keys))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
