"""Convert the official Synapse multi-organ CT release (RawData/Training/img, label) to 2D training
slices and 3D test volumes with a datalist (monaiseg.data.synapse).

Usage: python scripts/prepare_synapse.py --src RawData --dst DATASET [--train_cases 5 6 ...] [--test_cases 1 2 ...]
"""

from monaiseg.data.synapse import main

if __name__ == "__main__":
    main()
