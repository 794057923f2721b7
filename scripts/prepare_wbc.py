"""Convert the WBC CellaVision dataset ("Dataset 2" of Zheng et al., Micron 2018) to the cell dataset format.

Source layout: NNN.bmp (300x300 RGB), NNN.png (mask 0 / 128 cytoplasm / 255 nucleus), class_labels.csv.
Usage: python scripts/prepare_wbc.py --src DIR --out DIR [--seed 0] [--min_area 50]
"""

from monaiseg.data.cells import main

if __name__ == "__main__":
    main("wbc")
