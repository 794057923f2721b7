"""Convert EndoVis2018 with ISINet's instrument-type labels to the surgical dataset layout.

Source: SRC/<release folder>/seq_N/left_frames/frameNNN.png and
SRC/<release folder>/seq_N/instrument_labels*/...frameNNN..._classC_instI.png (see monaiseg.data.endovis).
Usage: python scripts/prepare_endovis2018.py SRC DST [--labels_folder NAME]
"""

from monaiseg.data.endovis import main

if __name__ == "__main__":
    main("endovis2018")
