"""The monaiseg MONAI Label app: every bundle that declares a monai-label task type, served.

MONAI Label loads this file (`--app` folder with main.py) and instantiates the MONAILabelApp
subclass. App conf (`--conf KEY VALUE`, set by `monaiseg label serve`):
- `bundles`: comma-separated bundle folders or folders of bundles (default: the repo's bundles/)
- `overrides`: ";"-separated "BUNDLE:FILE[,FILE]" config files merged after that bundle's
  inference.json (`bundles.parse_overrides`: a bundle not served or a file it lacks stops the start)
- `random_init`: comma-separated bundles that may be served with random weights (a network whose
  config loads no checkpoint is otherwise skipped); /info and the log say per model what it runs on
- `cache_mib`: bound of the in-memory image-embedding cache shared by the interactive bundles
  (MiB, default 1024; 0: no reuse)
- `max_sessions`, `session_idle_s`: how many interactive sessions are kept (default 8) and after
  how many idle seconds one expires (default 1800)

`--studies http(s)://.../dicom-web`: a DICOMweb server (e.g. Orthanc) is the datastore
(`monaiseg.label.dicomweb.CheckedDICOMwebDatastore`: checked series, DICOM SEG results).
"""

from __future__ import annotations

import logging
from pathlib import Path

import requests
from fastapi import HTTPException
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMwebClientX
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore

from monaiseg.data.memory_cache import MemoryLRU
from monaiseg.label.bundles import describe_weights, discover, parse_overrides, weights_source
from monaiseg.label.dicomweb import CheckedDICOMwebDatastore
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
        self.bundles, self.skipped = discover(paths)
        overrides = parse_overrides([p for p in conf.get("overrides", "").split(";") if p], self.bundles, self.skipped)
        self.runtimes = {name: BundleRuntime(info, overrides.get(name, [])) for name, info in self.bundles.items()}
        random_init = {p for p in conf.get("random_init", "").split(",") if p}
        for name, rt in list(self.runtimes.items()):
            source = weights_source(rt.info, rt.config())
            if source["source"] == "random" and name not in random_init:
                self.skipped[name] = "its config loads no checkpoint (random weights): --random-init NAME serves it so"
                del self.runtimes[name], self.bundles[name]
            else:
                logger.info("bundle %s serves %s", name, describe_weights(source))
        for name, reason in self.skipped.items():
            logger.warning("bundle %s not served: %s", name, reason)
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

    def init_remote_datastore(self) -> Datastore:
        """A DICOMweb server (user / password from MONAI Label's settings, as its own datastore)."""
        session = None
        if settings.MONAI_LABEL_DICOMWEB_USERNAME and settings.MONAI_LABEL_DICOMWEB_PASSWORD:
            session = requests.Session()
            session.auth = (settings.MONAI_LABEL_DICOMWEB_USERNAME, settings.MONAI_LABEL_DICOMWEB_PASSWORD)
        client = DICOMwebClientX(
            url=self.studies,
            session=session,
            qido_url_prefix=settings.MONAI_LABEL_QIDO_PREFIX,
            wado_url_prefix=settings.MONAI_LABEL_WADO_PREFIX,
            stow_url_prefix=settings.MONAI_LABEL_STOW_PREFIX,
        )
        # dicomweb-client retries every failure 5 times over 30 s of back-off, a refused connection
        # included: once after 0.2 s is enough to tell a user that the server is down
        client.set_http_retry_params(max_attempts=2, wait_exponential_multiplier=100)
        return CheckedDICOMwebDatastore(
            client,
            settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER,
            (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None,
            self.segment_names,
        )

    def segment_names(self, model: str | None) -> dict[int, str]:
        """{label value: name} of a served bundle (all served bundles' labels when `model` is None
        or unknown; the first bundle naming a value wins)."""
        runtimes = [self.runtimes[model]] if model in self.runtimes else list(self.runtimes.values())
        names: dict[int, str] = {}
        for rt in runtimes:
            for name, value in rt.info.labels.items():
                names.setdefault(value, name)
        return names

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
        for name, rt in self.runtimes.items():
            if name in meta.get("models", {}):
                meta["models"][name]["weights"] = weights_source(rt.info, rt.config())
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
                modality = store.series_modality(image) if isinstance(store, CheckedDICOMwebDatastore) else None
                if modality:
                    raise HTTPException(422, detail=f"series {image}: a {modality} object is not an image to segment")
                raise HTTPException(404, detail=f"image {image!r} is not in the datastore")
        return super().infer(request, datastore)

    def train(self, request):
        self._require(request.get("model"))
        return super().train(request)
