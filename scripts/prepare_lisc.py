"""Convert the LISC release (Rezatofighi & Soltanian-Zadeh, CMIG 2011) to the cell dataset format.

Source layout (see monaiseg.data.cells): 'LISC Database/Main Dataset/<class>/<n>.bmp' and
'Ground Truth Segmentation/<class>/areaforexpert<E>/<n>_expert.bmp'; the 'mixt' folder and
images without ground truth are skipped.
Usage: python scripts/prepare_lisc.py --src DIR --out DIR [--expert 1] [--seed 0]
"""

import argparse
import json

from monaiseg.data.cells import prepare_lisc


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", required=True, help="the 'LISC Database' folder or its parent")
    parser.add_argument("--out", required=True, help="dataset folder to create (must not exist or be empty)")
    parser.add_argument("--expert", type=int, default=1, help="use the masks of areaforexpert<EXPERT>")
    parser.add_argument("--seed", type=int, default=0, help="seed of the 70/15/15 split")
    args = parser.parse_args(argv)
    try:
        datalist = prepare_lisc(args.src, args.out, expert=args.expert, seed=args.seed)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        parser.error(str(e))
    content = json.loads(datalist.read_text())
    for split in ("training", "validation", "testing"):
        print(f"{split}: {len(content[split])} images")
    for reason, paths in content["skipped"].items():
        print(f"skipped ({reason}): {len(paths)} images")
    print(datalist)


if __name__ == "__main__":
    main()
