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
- `max_voxels`: the largest image (elements, from its header) an upload or infer may name (413
  beyond; default `uploads.DEFAULT_MAX_VOXELS`)

Requests name images, labels, tags and sessions by id, never by path (`monaiseg.label.confined`:
the datastore and session store check every id and every uploaded file); an infer reads a datastore
image, or a file uploaded with the request or into a session, nothing else. Every temporary file
lives in the app folder's `tmp/` and is removed when its request ends, failed or not.

`--studies http(s)://.../dicom-web`: a DICOMweb server (e.g. Orthanc) is the datastore
(`monaiseg.label.dicomweb.CheckedDICOMwebDatastore`: checked series, DICOM SEG results).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import requests
from fastapi import HTTPException
from monailabel.config import settings
from monailabel.datastore.dicom import DICOMwebClientX
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore

from monaiseg.data.memory_cache import MemoryLRU
from monaiseg.label.bundles import describe_weights, discover, parse_overrides, weights_source
from monaiseg.label.confined import ConfinedLocalDatastore, ConfinedSessions, discard, private_tempdir, staged
from monaiseg.label.dicomweb import CheckedDICOMwebDatastore, ConfinedDICOMwebDatastore
from monaiseg.label.ids import check_name
from monaiseg.label.reuse import ReusedNetworks
from monaiseg.label.runtime import BundleRuntime
from monaiseg.label.sessions import EXPIRED, SessionStore
from monaiseg.label.tasks import TASKS, InteractiveTask
from monaiseg.label.train import BundleTrainTask
from monaiseg.label.uploads import DEFAULT_MAX_VOXELS, check_image

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
        self.max_voxels = int(conf.get("max_voxels", DEFAULT_MAX_VOXELS))
        self.dims = (2, 3)  # images and volumes: a bundle's task refuses the kind it does not take, naming it
        self.tmp = private_tempdir(Path(app_dir) / "tmp")
        self.checked_files: dict[tuple[str, int, int], bool] = {}  # datastore files checked whole, oldest first
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
        return ConfinedDICOMwebDatastore(
            client,
            settings.MONAI_LABEL_DICOMWEB_SEARCH_FILTER,
            (settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or "").strip() or None,
            self.segment_names,
        )

    def init_datastore(self) -> Datastore:
        """The datastore, confined (`monaiseg.label.confined`), with this server's upload limits."""
        if self.studies.startswith(("http://", "https://")):
            store = super().init_datastore()
        else:
            store = ConfinedLocalDatastore(
                self.studies,
                extensions=settings.MONAI_LABEL_DATASTORE_FILE_EXT,
                auto_reload=settings.MONAI_LABEL_DATASTORE_AUTO_RELOAD,
                read_only=settings.MONAI_LABEL_DATASTORE_READ_ONLY,
            )
        store.max_voxels, store.dims = self.max_voxels, self.dims
        return store

    def _load_sessions(self, load=False):
        if not load:
            return None
        return ConfinedSessions(
            settings.MONAI_LABEL_SESSION_PATH, settings.MONAI_LABEL_SESSION_EXPIRY, self.max_voxels, self.dims
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
        """Checked before any work: the image is a datastore id (its header within `max_voxels`) or a
        file uploaded with the request or into a session (checked whole); a "label" path is the
        request's uploaded file. The request's temporary files are removed, whatever happens."""
        self._require(request.get("model"))
        image, label = request.get("image"), request.get("label")
        if not image:  # MONAI Label passes no image when the named session_id is unknown or expired
            raise HTTPException(410, detail=f"{EXPIRED} (MONAI Label session unknown or expired) with the image")
        request, uploads = dict(request), [p for p in (image, label) if self._uploaded(p)]
        try:
            if image in uploads:
                session = self._in_session(image)  # checked whole when the session was made
                name = None if session else "upload" + "".join(Path(image).suffixes)  # the client's extension
                checked = check_image(image, self.max_voxels, self.dims, name, header_only=session, label="image")
                if not session:  # a session's image keeps its path (sessions are bound to it), stored as image.EXT
                    request["image"] = staged(image, checked.ext)
                    uploads.append(request["image"])
            else:
                self._check_stored(check_name(image, "image"), datastore or self.datastore())
            if isinstance(label, str) and label not in uploads and ("/" in label or "\\" in label):
                raise HTTPException(
                    400, detail=f"label {label!r}: a segment name or value, or a file sent with the request"
                )
            if label in uploads:
                checked = check_image(
                    label, self.max_voxels, self.dims, "upload" + "".join(Path(label).suffixes), label="label"
                )
                request["label"] = staged(label, checked.ext)
                uploads.append(request["label"])
            return super().infer(request, datastore)
        finally:
            for path in uploads:
                discard(path)

    def _in_session(self, path: str) -> bool:
        store = self.sessions()
        root = os.path.realpath(store.store_path) if store is not None else None
        return root is not None and os.path.realpath(path).startswith(root + os.sep)

    def _uploaded(self, path: object) -> bool:
        """True for a file MONAI Label wrote for this request (in the temporary folder) or a session's image."""
        if not isinstance(path, str) or not os.path.isabs(path) or not os.path.isfile(path):
            return False
        return os.path.dirname(os.path.realpath(path)) == str(self.tmp) or self._in_session(path)

    def _check_stored(self, image: str, store: Datastore) -> None:
        """404 unless `image` is in the datastore (422 for a DICOMweb series that is no image); its file
        checked whole (`check_image`: 413 beyond `max_voxels`, 400 when unreadable or truncated) once
        per version (path, size, mtime): a file put in the studies folder by hand is checked too."""
        if image not in store.list_images():
            modality = store.series_modality(image) if isinstance(store, CheckedDICOMwebDatastore) else None
            if modality:
                raise HTTPException(422, detail=f"series {image}: a {modality} object is not an image to segment")
            raise HTTPException(404, detail=f"image {image!r} is not in the datastore")
        uri = store.get_image_uri(image)
        if os.path.isfile(uri):
            st = os.stat(uri)
            version = (uri, st.st_size, st.st_mtime_ns)
            if version not in self.checked_files:
                check_image(uri, self.max_voxels, (2, 3), label="image")
                self.checked_files[version] = True
                while len(self.checked_files) > 4096:
                    self.checked_files.pop(next(iter(self.checked_files)))

    def train(self, request):
        self._require(request.get("model"))
        return super().train(request)
