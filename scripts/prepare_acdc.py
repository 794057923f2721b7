"""Convert the official ACDC release (training/patientNNN with Info.cfg, ED/ES frames and _gt) to
2D training slices and 3D validation/test volumes with a datalist (monaiseg.data.acdc).

Usage: python scripts/prepare_acdc.py --src database --dst DATASET [--train_patients 1 4 ...] [--test_patients ...]
"""

from monaiseg.data.acdc import main

if __name__ == "__main__":
    main()
