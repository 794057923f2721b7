"""monaiseg: MONAI bundles for SAM-family medical image segmentation.

Layers, lowest first (a module imports only from its own layer or lower ones; tested):
utils -> prompts, visualize -> data -> networks -> losses, metrics -> transforms -> inferers
-> engines -> handlers -> label -> cli.

The parts are imported when first used (`monaiseg.networks`, `from monaiseg import handlers`), not by
`import monaiseg`: a bundle config's `$import monaiseg` costs nothing until it names a part.

Known benign third-party warnings (`BENIGN_WARNINGS`) are filtered on import unless `MONAISEG_VERBOSE` is set.
"""

from __future__ import annotations

import importlib
import os
import warnings
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

# (category, message regex at the start, module regex): what they say is expected on a CPU machine or deprecated
# inside a dependency we do not call ourselves
BENIGN_WARNINGS: tuple[tuple[type[Warning], str, str], ...] = (
    (UserWarning, "NvImgCodecPydicomReader: nvImageCodec decoder plugin did not register", r"monai\.data"),
    (FutureWarning, r"Importing from timm\.models\.\w+ is deprecated", r"timm\."),
)


def _filter_benign_warnings() -> None:
    """Ignore `BENIGN_WARNINGS` unless `MONAISEG_VERBOSE` is set (then every warning is shown)."""
    if not os.environ.get("MONAISEG_VERBOSE"):
        for category, message, module in BENIGN_WARNINGS:
            warnings.filterwarnings("ignore", message, category, module)


_filter_benign_warnings()


def __getattr__(name: str) -> Any:
    """`monaiseg.<part>` imports the part on first use (PEP 562)."""
    if name in _PARTS:
        module = importlib.import_module(f"{__name__}.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PARTS})
