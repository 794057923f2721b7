"""Convert the EndoVis2017 training release to the surgical dataset layout with 4 folds.

Source: SRC/instrument_dataset_K/left_frames/frameNNN.png and
SRC/instrument_dataset_K/ground_truth/<Instrument_name>_labels/frameNNN.png, K = 1..8
(see monaiseg.data.endovis). Frames are cropped to 1024x1280 as upstream unless --no_crop.
Usage: python scripts/prepare_endovis2017.py SRC DST [--no_crop]
"""

from monaiseg.data.endovis import main

if __name__ == "__main__":
    main("endovis2017")
