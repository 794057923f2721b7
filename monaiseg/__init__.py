"""monaiseg: MONAI bundles for SAM-family medical image segmentation."""

from . import data, engines, metrics, networks, transforms

__version__ = "0.1.0"
