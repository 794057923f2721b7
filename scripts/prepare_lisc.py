"""Convert the LISC release (Rezatofighi & Soltanian-Zadeh, CMIG 2011) to the cell dataset format.

Source layout (see monaiseg.data.cells): 'LISC Database/Main Dataset/<class>/<n>.bmp' and
'Ground Truth Segmentation/<class>/areaforexpert<E>/<n>_expert.bmp'; the 'mixt' folder and
images without ground truth are skipped.
Usage: python scripts/prepare_lisc.py --src DIR --out DIR [--expert 1] [--seed 0]
"""

from monaiseg.data.cells import main

if __name__ == "__main__":
    main("lisc")
