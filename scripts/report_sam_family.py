"""Parameter counts (total / trainable, as each bundle's train.json freezes them) and CPU
inference time per image of the SAM-family bundles at their default size, in one run.

    .venv/bin/python scripts/report_sam_family.py [--bundles medsam sam_med2d ...] [--repeats 3] [--tiny]

Networks are built from each bundle's `configs/train.json` with random weights (foundation
checkpoint null: the file is not needed for counts and timing). One image per bundle: a grey
512 x 512 image with one box for the prompted bundles (medsam, sam_med2d), a 3-channel image at
the model size for the automatic ones; the median of `--repeats` timed calls after one warm-up.
`--tiny` merges each bundle's `configs/tiny.json` (a quick check of the script itself).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from monai.bundle import ConfigParser

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ("medsam", "sam_med2d", "sam_automed", "sam_medcls")
PROMPTED = {"medsam", "sam_med2d"}


def build(bundle: str, tiny: bool = False) -> tuple[torch.nn.Module, int]:
    """The training network of `bundle` (random weights, CPU) and its input image size."""
    configs = REPO / "bundles" / bundle / "configs"
    parser = ConfigParser()
    parser.read_config([configs / "train.json", *([configs / "tiny.json"] if tiny else [])])
    parser.update(
        {"bundle_root": str(REPO / "bundles" / bundle), "foundation_checkpoint": None, "device": "$torch.device('cpu')"}
    )
    return parser.get_parsed_content("network"), parser.get_parsed_content("image_size")


def time_per_image(network: torch.nn.Module, bundle: str, image_size: int, repeats: int) -> float:
    """Median seconds of one inference call (eval mode, no autograd)."""
    network.eval()
    if bundle in PROMPTED:
        image, box = torch.rand(1, 1, 512, 512), torch.tensor([[100.0, 120.0, 300.0, 340.0]])

        def call():
            return network.predict_masks(image, boxes=box)
    else:
        image = torch.rand(1, 3, image_size, image_size)

        def call():
            return network(image)

    times = []
    with torch.no_grad():
        call()
        for _ in range(repeats):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundles", nargs="+", default=list(BUNDLES), choices=BUNDLES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="merge each bundle's tiny.json")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads")
    print("| bundle | input | total parameters | trainable | trainable % | CPU s / image |")
    print("|---|---|---|---|---|---|")
    for bundle in args.bundles:
        network, image_size = build(bundle, args.tiny)
        total = sum(p.numel() for p in network.parameters())
        trainable = sum(p.numel() for p in network.parameters() if p.requires_grad)
        seconds = time_per_image(network, bundle, image_size, args.repeats)
        print(
            f"| {bundle} | {image_size} | {total:,} | {trainable:,} | {100 * trainable / total:.3f} | {seconds:.3f} |",
            flush=True,
        )
        del network


if __name__ == "__main__":
    main()
