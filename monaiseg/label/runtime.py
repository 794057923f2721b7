"""One served bundle at run time: its network (built once, shared read-only, rebuilt when
`models/model.pt` changes) and, per request, a fresh parse of its inference config whose
evaluator runs on one item with the request's prompts, writing into the request's own folder.

Nothing but the network's weights is shared between requests: transforms, inferer, data loader,
evaluator and outputs are new for each one, so concurrent requests give sequential results. What
a request does not change is read once: the merged config files (per 2D / 3D) and MONAI's table of
component names (`ComponentLocator`, which a new parser otherwise rebuilds by scanning MONAI's
modules: about a tenth of a second per request). An interactive request may also pass a
`MemoryLRU` (`prepared`): the image as the preprocessing's leading image-only transforms leave it
(read, checked, windowed) is then kept there per file version, and the next prompt on the same
file starts from a copy of it (`PreparedImage`).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.bundle.config_item import ComponentLocator
from monai.transforms import Compose, MapTransform, Randomizable

from monaiseg.data.memory_cache import MemoryLRU
from monaiseg.label.bundles import BundleInfo, describe_weights, weights_source
from monaiseg.networks.checkpoint import load_model_weights

logger = logging.getLogger(__name__)
LOCATOR = ComponentLocator()  # read-only once built: shared by every parser of the app


class RequestError(ValueError):
    """A request the bundle cannot serve (bad prompts, unreadable image, wrong dimensions):
    the server answers it with HTTP `status` and this message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of a chain (MONAI wraps transform errors in RuntimeError)."""
    while True:
        inner = exc.__cause__ if exc.__cause__ is not None else None if exc.__suppress_context__ else exc.__context__
        if inner is None:
            return exc
        exc = inner


def image_only_prefix(compose: Compose, item: dict) -> int:
    """How many leading transforms of `compose` depend on `item`'s "image" file alone: dictionary
    transforms, not random, whose keys are "image" or keys the item lacks (allowed missing)."""
    count = 0
    for transform in compose.transforms:
        if not isinstance(transform, MapTransform) or isinstance(transform, Randomizable):
            break
        others = [k for k in transform.keys if k != "image"]
        if any(k in item for k in others) or (others and not transform.allow_missing_keys):
            break
        count += 1
    return count


class PreparedImage:
    """A dataset transform: `compose` on an item whose first `count` (image-only) transforms are
    read from `cache` under `key` (computed and stored on a miss); the rest run on a copy."""

    def __init__(self, compose: Compose, count: int, cache: MemoryLRU, key: tuple):
        self.compose, self.count, self.cache, self.key = compose, count, cache, key

    def __call__(self, item: dict) -> dict:
        prepared = self.cache.get(self.key)
        if prepared is None:
            prepared = self.compose({"image": item["image"]}, end=self.count)
            if not (isinstance(prepared, dict) and all(isinstance(v, torch.Tensor) for v in prepared.values())):
                return self.compose(item)  # not a dict of tensors: not kept
            self.cache.put(self.key, prepared)
        copy_ = {k: v.clone() for k, v in prepared.items()}  # cached tensors are never written
        return self.compose({**item, **copy_}, start=self.count)


class BundleRuntime:
    """Configs and weights of one bundle. `overrides`: extra config files of the bundle merged
    after `inference.json` (e.g. ["tiny.json"], checked by `bundles.parse_overrides`); `image_2d_override`: merged too
    for 2D inputs when the bundle has it (medsam's images_2d.json)."""

    def __init__(
        self, info: BundleInfo, overrides: list[str] | tuple[str, ...] = (), image_2d_override: str = "images_2d.json"
    ):
        self.info = info
        configs = info.root / "configs"
        self.files = [configs / "inference.json"] + [configs / f for f in overrides if (configs / f).is_file()]
        self.file_2d = configs / image_2d_override if (configs / image_2d_override).is_file() else None
        self._lock = threading.Lock()
        self._network: torch.nn.Module | None = None
        self._signature: tuple | None = None
        self._configs: dict[bool, dict] = {}
        self._config_lock = threading.Lock()

    def config(self, image_2d: bool = False) -> dict:
        """The merged config (later files override earlier keys), bundle_root set: a copy of the
        files as read the first time."""
        with self._config_lock:
            if image_2d not in self._configs:
                parser = ConfigParser()
                files = self.files + ([self.file_2d] if image_2d and self.file_2d else [])
                parser.read_config([str(f) for f in files])
                parser["bundle_root"] = str(self.info.root)
                self._configs[image_2d] = parser.get()
            return copy.deepcopy(self._configs[image_2d])

    def parser(self, image_2d: bool = False) -> ConfigParser:
        """A fresh parser of the merged config (with the shared component table)."""
        parser = ConfigParser(self.config(image_2d))
        parser.locator = LOCATOR
        return parser

    def parsed(self, key: str, image_2d: bool = False):
        """One component of the config, built afresh (e.g. the inferer with its settings)."""
        return self.parser(image_2d).get_parsed_content(key)

    def has(self, key: str) -> bool:
        return key in self.config()

    def _weights_signature(self) -> tuple:
        """(inode, mtime, size) of `models/model.pt`; ("network_def",) when it is absent and the bundle
        serves its network's own default weights (`BundleInfo.default_weights`)."""
        try:
            st = os.stat(self.info.weights)
        except FileNotFoundError:
            if self.info.default_weights:
                return ("network_def",)
            raise
        return st.st_ino, st.st_mtime_ns, st.st_size

    def network(self) -> torch.nn.Module:
        """The network with `models/model.pt` loaded (or, without one, `network_def` as configured for
        bundles with default weights), in eval mode; rebuilt when the file changes (training from the
        server replaces it atomically). Requests in flight keep the old one."""
        with self._lock:
            try:
                signature = self._weights_signature()
            except FileNotFoundError:
                raise RequestError(
                    f"{self.info.weights} not found: bundle {self.info.name} has no weights", 404
                ) from None
            if self._network is None or signature != self._signature:
                parser = ConfigParser(self.config())
                default = signature == ("network_def",)
                for key in ("foundation_checkpoint", "checkpoint", "backbone_weights"):
                    if key in parser and not default:
                        parser[key] = None  # built with random init, then model.pt is loaded
                network = parser.get_parsed_content("network_def")
                if not default:
                    load_model_weights(network, self.info.weights)
                device = parser.get_parsed_content("device") if "device" in parser else torch.device("cpu")
                self._network, self._signature = network.to(device).eval(), signature
                source = describe_weights(weights_source(self.info, self.config()))
                logger.info("bundle %s: %s loaded", self.info.name, source)
            return self._network

    @property
    def weights_version(self) -> int | None:
        """mtime (ns) of the `model.pt` the current network was loaded from (0: default weights)."""
        if self._signature is None:
            return None
        return 0 if self._signature == ("network_def",) else self._signature[1]

    def prepared_key(self, path: str | Path, image_2d: bool) -> tuple:
        """Key of a file's prepared image: (bundle, "prepared"), the file and its version, 2D or not."""
        st = os.stat(path)
        return (
            f"{self.info.name}:prepared",
            str(Path(path).resolve()),
            st.st_ino,
            st.st_mtime_ns,
            st.st_size,
            image_2d,
        )

    def run(
        self,
        item: dict,
        output_dir: str | Path,
        image_2d: bool = False,
        prepared: MemoryLRU | None = None,
        **overrides,
    ) -> dict:
        """Run the bundle's evaluator on one `item` ({"image": path, prompt keys...}) with outputs
        in `output_dir`; config `overrides` for keys the bundle has; `prepared`: keep the image as
        the leading image-only transforms leave it there (`PreparedImage`). Returns the evaluator's
        output for the item (dict with "pred" after the bundle's postprocessing)."""
        network = self.network()
        parser = self.parser(image_2d)
        keys = set(parser.get())  # `key in parser` on a missing key costs MONAI an edit-distance search
        settings = {
            "output_dir": str(output_dir),
            "data": [item],
            "network": network,
            "num_workers": 0,
            "batch_size": 1,
            "save_overlays": False,
            **overrides,
        }
        for key, value in settings.items():
            if key in keys or key in ("data", "network"):
                parser[key] = value
        evaluator = parser.get_parsed_content("evaluator")
        dataset = getattr(evaluator.data_loader, "dataset", None)
        compose = getattr(dataset, "transform", None)
        if prepared is not None and isinstance(compose, Compose) and isinstance(item.get("image"), (str, Path)):
            count = image_only_prefix(compose, item)
            if count:
                file_key = (*self.prepared_key(item["image"], image_2d), count)
                dataset.transform = PreparedImage(compose, count, prepared, file_key)  # type: ignore[union-attr]
        evaluator.logger.setLevel(logging.WARNING)
        evaluator.run()
        output = evaluator.state.output
        return output[0] if isinstance(output, (list, tuple)) else output


def labelled_datalist(items: list[dict], path: str | Path) -> Path:
    """Write a MONAI datalist (training = validation = testing = `items`) to `path`."""
    path = Path(path)
    path.write_text(json.dumps({"training": items, "validation": items, "testing": items}, indent=2))
    return path
