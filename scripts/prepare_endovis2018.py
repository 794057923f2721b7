"""Convert EndoVis2018 with ISINet's instrument-type labels to the surgical dataset layout.

Source: SRC/<release folder>/seq_N/left_frames/frameNNN.png and
SRC/<release folder>/seq_N/instrument_labels*/...frameNNN..._classC_instI.png (see monaiseg.data.endovis).
Usage: python scripts/prepare_endovis2018.py SRC DST [--labels_folder NAME]
"""

import argparse
import json

from monaiseg.data.endovis import convert_endovis2018


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="EndoVis2018 release folder with ISINet's instrument labels")
    parser.add_argument("dst", help="dataset folder to create (must not exist or be empty)")
    parser.add_argument(
        "--labels_folder",
        default=None,
        help="name of the per-sequence instrument label folder (default: the one instrument_labels*)",
    )
    args = parser.parse_args(argv)
    try:
        dst = convert_endovis2018(args.src, args.dst, labels_folder=args.labels_folder)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        parser.error(str(e))
    content = json.loads((dst / "datalist.json").read_text())
    print(f"training: {len(content['training'])} frames, validation: {len(content['validation'])} frames")
    print(dst / "datalist.json")


if __name__ == "__main__":
    main()
