"""monaiseg: MONAI bundles for SAM-family medical image segmentation.

Layers, lowest first (a module imports only from its own layer or lower ones; tested):
utils -> prompts, visualize -> data -> networks -> losses, metrics -> transforms -> inferers
-> engines -> handlers -> label -> cli.
"""

from . import data, engines, handlers, inferers, losses, metrics, networks, prompts, transforms, utils

__version__ = "0.1.0"
