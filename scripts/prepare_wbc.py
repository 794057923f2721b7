"""Convert the WBC CellaVision dataset ("Dataset 2" of Zheng et al., Micron 2018) to the cell dataset format.

Source layout: NNN.bmp (300x300 RGB), NNN.png (mask 0 / 128 cytoplasm / 255 nucleus), class_labels.csv.
Usage: python scripts/prepare_wbc.py --src DIR --out DIR [--seed 0] [--min_area 50]
"""

import argparse
import json

from monaiseg.data.cells import prepare_wbc


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, help="folder with NNN.bmp, NNN.png and class_labels.csv")
    parser.add_argument("--out", required=True, help="dataset folder to create (must not exist or be empty)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the 70/15/15 split")
    parser.add_argument("--min_area", type=int, default=50, help="smallest cell kept, in pixels")
    args = parser.parse_args(argv)
    try:
        datalist = prepare_wbc(args.src, args.out, seed=args.seed, min_area=args.min_area)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        parser.error(str(e))
    content = json.loads(datalist.read_text())
    for split in ("training", "validation", "testing"):
        print(f"{split}: {len(content[split])} images")
    print(datalist)


if __name__ == "__main__":
    main()
