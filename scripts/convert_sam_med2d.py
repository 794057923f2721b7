"""Convert the released SAM-Med2D checkpoint (sam-med2d_b.pth, which pickles its optimizer) once
into `{'model': state_dict}` of plain tensors that the bundles load with weights_only=True.

    python scripts/convert_sam_med2d.py models/sam-med2d_b.pth models/sam-med2d_b_weights.pth --trust

Reading the release unpickles arbitrary objects (it can run code stored in the file): pass
--trust only for a file from a source you trust (the official release). The output is written
atomically; the input is left as it is.
"""

from __future__ import annotations

import argparse

from monaiseg.networks import extract_sam_med2d_weights


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="the released sam-med2d_b.pth")
    parser.add_argument("dst", help="output, e.g. models/sam-med2d_b_weights.pth")
    parser.add_argument("--trust", action="store_true", help="I trust the source of SRC (required)")
    args = parser.parse_args(argv)
    print(extract_sam_med2d_weights(args.src, args.dst, trust=args.trust))


if __name__ == "__main__":
    main()
