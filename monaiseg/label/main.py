"""The monaiseg MONAI Label app: every bundle that declares a monai-label task type, served.

MONAI Label loads this file (`--app` folder with main.py) and instantiates the MONAILabelApp
subclass. App conf (`--conf KEY VALUE`, set by `monaiseg label serve`):
- `bundles`: comma-separated bundle folders or folders of bundles (default: the repo's bundles/)
- `overrides`: comma-separated config file names merged after each bundle's inference.json when
  the bundle has them (e.g. "tiny.json")
- `cache_mib`: bound of the in-memory image-embedding cache shared by the interactive bundles
  (MiB, default 1024; 0: no reuse)
- `max_sessions`, `session_idle_s`: how many interactive sessions are kept (default 8) and after
  how many idle seconds one expires (default 1800)
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import HTTPException
from monailabel.interfaces.app import MONAILabelApp

from monaiseg.data.memory_cache import MemoryLRU
from monaiseg.label.bundles import discover
from monaiseg.label.reuse import ReusedNetworks
from monaiseg.label.runtime import BundleRuntime
from monaiseg.label.sessions import EXPIRED, SessionStore
from monaiseg.label.tasks import TASKS, InteractiveTask
from monaiseg.label.train import BundleTrainTask

logger = logging.getLogger(__name__)

DEFAULT_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


class MonaisegApp(MONAILabelApp):
    """Infer tasks per bundle (interactive / segmentation / classification) and a train task each."""

    def __init__(self, app_dir, studies, conf):
        paths = [p for p in conf.get("bundles", "").split(",") if p] or [str(DEFAULT_BUNDLES)]
        overrides = [p for p in conf.get("overrides", "").split(",") if p]
        self.bundles, self.skipped = discover(paths)
        for name, reason in self.skipped.items():
            logger.warning("bundle %s not served: %s", name, reason)
        self.runtimes = {name: BundleRuntime(info, overrides) for name, info in self.bundles.items()}
        cache_mib = float(conf.get("cache_mib", 1024))
        self.embedding_cache = MemoryLRU(int(cache_mib * 2**20)) if cache_mib > 0 else None
        self.session_store = SessionStore(int(conf.get("max_sessions", 8)), float(conf.get("session_idle_s", 1800)))
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="monaiseg",
            description="monaiseg bundles (SAM-family) served to 3D Slicer and OHIF",
            version="0.1.0",
        )

    def init_infers(self):
        networks = ReusedNetworks(self.embedding_cache)
        return {
            name: InteractiveTask(rt, networks, self.session_store)
            if rt.info.task.startswith("interactive")
            else TASKS[rt.info.task](rt)
            for name, rt in self.runtimes.items()
        }

    def init_trainers(self):
        return {name: BundleTrainTask(rt) for name, rt in self.runtimes.items()}

    def _require(self, model: str | None) -> None:
        if not model:
            raise HTTPException(400, detail="no model named in the request")
        if model in self.skipped:
            raise HTTPException(404, detail=f"model {model!r} is not served: {self.skipped[model]}")
        if model not in self.runtimes:
            raise HTTPException(404, detail=f"unknown model {model!r}; served: {sorted(self.runtimes)}")

    def info(self):
        meta = super().info()
        meta["skipped"] = self.skipped
        meta["embedding_cache"] = None if self.embedding_cache is None else self.embedding_cache.summary()
        meta["interactive_sessions"] = self.session_store.summary()
        return meta

    def infer(self, request, datastore=None):
        self._require(request.get("model"))
        image = request.get("image")
        if not image:  # MONAI Label passes no image when the named session_id is unknown or expired
            raise HTTPException(410, detail=f"{EXPIRED} (MONAI Label session unknown or expired) with the image")
        if isinstance(image, str) and image and not Path(image).exists():
            store = datastore or self.datastore()
            if image not in store.list_images():
                raise HTTPException(404, detail=f"image {image!r} is not in the datastore")
        return super().infer(request, datastore)

    def train(self, request):
        self._require(request.get("model"))
        return super().train(request)
