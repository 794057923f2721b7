"""Training a bundle from the server: `POST /train/<bundle>` runs the bundle's `train.json`
(`python -m monai.bundle run` in a subprocess) on the datastore's labelled images.

Request params: "tiny" (true: merge the bundle's configs/tiny.json), "max_epochs",
"tracking" ("mlflow") and "tracking_uri". The bundle's trainer writes `models/model.pt` atomically
(`save_model_atomic`); the infer task reloads the network when that file changes.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path

from fastapi import HTTPException
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from monaiseg.label.runtime import BundleRuntime, labelled_datalist
from monaiseg.utils.bundle_run import bundle_command, run_bundle
from monaiseg.utils.config import as_bool

logger = logging.getLogger(__name__)


class BundleTrainTask(TrainTask):
    """Runs the bundle's training on the datastore's images with a final label."""

    def __init__(self, runtime: BundleRuntime, timeout: float = 24 * 3600):
        super().__init__(f"{runtime.info.name}: train configs/train.json on the labelled images")
        self.runtime, self.timeout = runtime, timeout
        self._stats: dict = {}

    def config(self):
        return {"max_epochs": 1, "tiny": False, "tracking": "", "tracking_uri": ""}

    def stats(self):
        return self._stats

    def overrides(self, request: dict, dataset_dir: Path) -> tuple[list[Path], dict]:
        """The config files and `--key value` overrides of the training the request asks for."""
        configs = self.runtime.info.root / "configs"
        files = [configs / "train.json"] + (
            [configs / "tiny.json"] if as_bool(request.get("tiny") or False, "tiny") else []
        )
        overrides: dict = {"bundle_root": str(self.runtime.info.root), "dataset_dir": str(dataset_dir)}
        if request.get("max_epochs"):
            overrides["max_epochs"] = int(request["max_epochs"])
        if request.get("tracking"):
            overrides["tracking"] = str(request["tracking"])
            if request.get("tracking_uri"):
                overrides["tracking_uri"] = str(request["tracking_uri"])
        return files, overrides

    def __call__(self, request, datastore: Datastore):
        name = self.runtime.info.name
        items = datastore.datalist()
        if not items:
            raise HTTPException(400, detail=f"{name}: the datastore has no labelled image to train on")
        with tempfile.TemporaryDirectory(prefix=f"monaiseg-train-{name}-") as tmp:
            labelled_datalist(items, Path(tmp) / "datalist.json")
            files, overrides = self.overrides(request, Path(tmp))
            logger.info("train %s on %d labelled images: %s", name, len(items), bundle_command(files, **overrides))
            start = time.time()
            proc = run_bundle(files, cwd=tmp, timeout=self.timeout, check=False, **overrides)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout)[-2000:]
            raise HTTPException(500, detail=f"{name}: training failed (exit {proc.returncode}): {tail}")
        weights = self.runtime.info.weights
        self._stats = {
            "images": len(items),
            "seconds": round(time.time() - start, 1),
            "model": str(weights),
            "updated": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(weights.stat().st_mtime)),
        }
        return self._stats
