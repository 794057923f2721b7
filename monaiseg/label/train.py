"""Training a bundle from the server: `POST /train/<bundle>` runs the bundle's `train.json`
(`python -m monai.bundle run` in a subprocess) on the datastore's labelled images.

Request params: "tiny" (true: merge the bundle's configs/tiny.json), "max_epochs",
"tracking" ("mlflow") and "tracking_uri". The bundle's trainer writes `models/model.pt` atomically
(`save_model_atomic`); the infer task reloads the network when that file changes.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastapi import HTTPException
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from monaiseg.label.runtime import BundleRuntime, labelled_datalist
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

    def command(self, request: dict, dataset_dir: Path) -> list[str]:
        configs = self.runtime.info.root / "configs"
        files = [configs / "train.json"] + (
            [configs / "tiny.json"] if as_bool(request.get("tiny") or False, "tiny") else []
        )
        cmd = [
            sys.executable,
            "-m",
            "monai.bundle",
            "run",
            "--config_file",
            str([str(f) for f in files]),
            "--bundle_root",
            str(self.runtime.info.root),
            "--dataset_dir",
            str(dataset_dir),
        ]
        if request.get("max_epochs"):
            cmd += ["--max_epochs", str(int(request["max_epochs"]))]
        if request.get("tracking"):
            cmd += ["--tracking", str(request["tracking"])]
            if request.get("tracking_uri"):
                cmd += ["--tracking_uri", str(request["tracking_uri"])]
        return cmd

    def __call__(self, request, datastore: Datastore):
        name = self.runtime.info.name
        items = datastore.datalist()
        if not items:
            raise HTTPException(400, detail=f"{name}: the datastore has no labelled image to train on")
        with tempfile.TemporaryDirectory(prefix=f"monaiseg-train-{name}-") as tmp:
            labelled_datalist(items, Path(tmp) / "datalist.json")
            cmd = self.command(request, Path(tmp))
            logger.info("train %s on %d labelled images: %s", name, len(items), " ".join(cmd))
            start = time.time()
            proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=self.timeout)
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
