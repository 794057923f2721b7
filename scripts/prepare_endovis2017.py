"""Convert the EndoVis2017 training release to the surgical dataset layout with 4 folds.

Source: SRC/instrument_dataset_K/left_frames/frameNNN.png and
SRC/instrument_dataset_K/ground_truth/<Instrument_name>_labels/frameNNN.png, K = 1..8
(see monaiseg.data.endovis). Frames are cropped to 1024x1280 as upstream unless --no_crop.
Usage: python scripts/prepare_endovis2017.py SRC DST [--no_crop]
"""

import argparse
import json

from monaiseg.data.endovis import ENDOVIS2017_CROP, convert_endovis2017


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="EndoVis2017 training folder holding instrument_dataset_1..8")
    parser.add_argument("dst", help="dataset folder to create (must not exist or be empty)")
    parser.add_argument("--no_crop", action="store_true", help="keep the black borders (no 1024x1280 crop)")
    args = parser.parse_args(argv)
    try:
        dst = convert_endovis2017(args.src, args.dst, crop=None if args.no_crop else ENDOVIS2017_CROP)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        parser.error(str(e))
    for fold in range(4):
        content = json.loads((dst / f"datalist_fold{fold}.json").read_text())
        print(
            f"fold {fold}: training {len(content['training'])} frames, validation {len(content['validation'])} frames"
        )
    print(dst)


if __name__ == "__main__":
    main()
