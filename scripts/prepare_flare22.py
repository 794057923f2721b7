"""Write a MONAI datalist for the official FLARE22 layout.

Usage: python scripts/prepare_flare22.py --data_root DIR --output datalist.json [--seed 0] [--val_fraction 0.2]
"""

from monaiseg.data.volume_datasets import main

if __name__ == "__main__":
    main("flare22")
