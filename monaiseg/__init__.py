"""monaiseg: MONAI bundles for SAM-family medical image segmentation.

Layers, lowest first (a module imports only from its own layer or lower ones; tested):
utils -> prompts, visualize -> data -> networks -> losses, metrics -> transforms -> inferers
-> engines -> handlers -> label -> cli.

The parts are imported when first used (`monaiseg.networks`, `from monaiseg import handlers`), not by
`import monaiseg`: a bundle config's `$import monaiseg` costs nothing until it names a part.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PARTS = (
    "cli",
    "data",
    "engines",
    "handlers",
    "inferers",
    "label",
    "losses",
    "metrics",
    "networks",
    "prompts",
    "transforms",
    "utils",
    "visualize",
)
__all__ = [*_PARTS, "__version__"]


def __getattr__(name: str) -> Any:
    """`monaiseg.<part>` imports the part on first use (PEP 562)."""
    if name in _PARTS:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PARTS})
