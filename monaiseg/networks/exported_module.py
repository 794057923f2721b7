"""`ExportedModule`: the lifecycle of an `nn.Module` that runs inference through an exported, compiled copy of
itself (TinyViT's `ExportedEncoder`, the mask decoder's `ExportedDecoder`).

The copy is built by `_export()` at the first call of `ensure_exported()` (one at a time, for concurrent
first requests), dropped when the weights may change (`load_state_dict`, training mode, a new runtime) and
never pickled or deep-copied. An export or compile failure is logged once and the module runs eager.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from torch import nn

logger = logging.getLogger(__name__)
_EXPORT_LOCK = threading.Lock()  # one export at a time (concurrent first calls, e.g. MONAI Label requests)


def _drop_export(module: ExportedModule, incompatible_keys: object) -> None:
    """`load_state_dict` post hook (a module-level function, so that the module pickles)."""
    module.drop_export()


class ExportedModule(nn.Module):
    """Base of a module with an exported runtime: subclasses set `runtime` ("eager" or another) and implement
    `_export()`; `ensure_exported()` gives the copy (None for eager or after a failed export)."""

    runtime: str = "eager"

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._exported: Any = None
        self.register_load_state_dict_post_hook(_drop_export)

    def _export(self) -> Any:
        """The exported runtime of this module as it is now (read from the on-disk cache when there)."""
        raise NotImplementedError

    def drop_export(self) -> None:
        """Forget the exported copy (the weights changed): the next inference call exports again."""
        self._exported = None

    def train(self, mode: bool = True) -> ExportedModule:
        if mode:
            self.drop_export()
        return super().train(mode)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "_exported": None}  # a compiled runtime neither pickles nor deep-copies

    def ensure_exported(self) -> Any:
        """The exported runtime, built now if needed; None for eager. E.g. called at a server's start, so that
        the first request does not pay for it."""
        with _EXPORT_LOCK:
            if self._exported is None and self.runtime != "eager":
                try:
                    self._exported = self._export()
                except Exception as exc:  # noqa: BLE001 - any export / compile failure falls back, logged
                    logger.warning(
                        "%s: %s runtime failed (%s: %s); running eager",
                        type(self).__name__,
                        self.runtime,
                        type(exc).__name__,
                        exc,
                    )
                    self.runtime = "eager"
            return self._exported
