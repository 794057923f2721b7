"""Start, query and stop a `monaiseg label serve` server on a loopback port (tests, load check,
benchmark), and copies of bundles with tiny random weights to serve."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import requests
import torch
from monai.bundle import ConfigParser
from requests_toolbelt.multipart.decoder import MultipartDecoder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_copy(
    bundle: str | Path, target: str | Path, overrides: dict | None = None, weights: bool = True, seed: int = 0
) -> Path:
    """Copy a bundle to `target` with `configs/label_test.json` (= `overrides`) and, when `weights`,
    `models/model.pt` holding the random-init network of inference.json + tiny.json + overrides."""
    target = Path(target)
    shutil.copytree(bundle, target, ignore=shutil.ignore_patterns("models", "eval", "runs"))
    (target / "configs" / "label_test.json").write_text(json.dumps(overrides or {}, indent=4))
    if weights:
        parser = ConfigParser()
        parser.read_config(
            [
                str(target / "configs" / f)
                for f in ("inference.json", "tiny.json", "label_test.json")
                if (target / "configs" / f).is_file()
            ]
        )
        parser["bundle_root"] = str(target)
        for key in ("foundation_checkpoint", "checkpoint", "backbone_weights"):
            if key in parser:
                parser[key] = None
        torch.manual_seed(seed)
        network = parser.get_parsed_content("network_def")
        (target / "models").mkdir()
        torch.save({"model": network.state_dict()}, target / "models" / "model.pt")
    return target


def tiny_overrides(bundles: str | Path) -> list[str]:
    """`--overrides` for the `tiny_copy` bundles in folder `bundles`, aimed at each: "NAME:tiny.json,label_test.json"
    for a copy with tiny weights (its model.pt holds that network), "NAME:label_test.json" for one without."""
    specs = []
    for configs in sorted(Path(bundles).glob("*/configs")):
        files = (
            ["tiny.json"]
            if (configs.parent / "models" / "model.pt").is_file() and (configs / "tiny.json").is_file()
            else []
        )
        files += ["label_test.json"] if (configs / "label_test.json").is_file() else []
        if files:
            specs.append(f"{configs.parent.name}:{','.join(files)}")
    return specs


class LabelServer:
    """`with LabelServer(studies, bundles, overrides) as server:` a running server on a free
    loopback port (`server.url`); on exit it is stopped and waited for, nothing left running.
    `overrides`: "BUNDLE:FILE[,FILE]" specs (`tiny_overrides`); `options`: more `label serve`
    arguments (e.g. ["--cache-mib", "64", "--max-sessions", "2"], ["--users", FILE])."""

    def __init__(
        self,
        studies: str | Path,
        bundles: list[str | Path],
        overrides: Sequence[str] = (),
        port: int | None = None,
        startup_timeout: float = 300,
        log: str | Path | None = None,
        options: Sequence[str] = (),
    ):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # the CLI module run as a file (-P: its folder not on sys.path): it imports the standard library only,
        # so the process does not import the whole monaiseg package (~8 s of CPU) before it execs MONAI Label
        self.cmd = [
            sys.executable,
            "-P",
            str(Path(__file__).resolve().parents[1] / "cli.py"),
            "label",
            "serve",
            "--studies",
            str(studies),
            "--port",
            str(self.port),
            "--bundles",
            *map(str, bundles),
        ]
        if overrides:
            self.cmd += ["--overrides", *overrides]
        self.cmd += list(options)
        self.startup_timeout = startup_timeout
        self.log = Path(log) if log else Path(studies).parent / f"label_server_{self.port}.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> LabelServer:
        env = {**os.environ, "MONAI_LABEL_DATASTORE_AUTO_RELOAD": "false"}
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                self.cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.time() + self.startup_timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/health", timeout=30).status_code == 200:
                    return self
            except requests.RequestException:  # not listening yet, or busy starting
                pass
            time.sleep(1)
        self.stop()
        raise TimeoutError(f"server not up after {self.startup_timeout} s: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # its own session: the server and its children
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def __exit__(self, *exc) -> None:
        self.stop()

    def upload(self, image_id: str, path: str | Path) -> None:
        with open(path, "rb") as f:
            r = requests.put(f"{self.url}/datastore/image", params={"image": image_id}, files={"file": f}, timeout=60)
        r.raise_for_status()

    def upload_label(self, image_id: str, path: str | Path, tag: str = "final") -> None:
        with open(path, "rb") as f:
            r = requests.put(
                f"{self.url}/datastore/label", params={"image": image_id, "tag": tag}, files={"label": f}, timeout=60
            )
        r.raise_for_status()

    def infer(self, model: str, image_id: str, params: dict | None = None, timeout: float = 600):
        """-> (HTTP status, result JSON (or the error), label file bytes or None)."""
        r = requests.post(
            f"{self.url}/infer/{model}",
            params={"image": image_id},
            data={"params": json.dumps(params or {})},
            timeout=timeout,
        )
        if r.status_code != 200:
            return (
                r.status_code,
                r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text,
                None,
            )
        if not r.headers.get("content-type", "").startswith("multipart"):
            return r.status_code, r.json(), None
        result, label = {}, None
        for part in MultipartDecoder.from_response(r).parts:
            disposition = part.headers.get(b"Content-Disposition", b"").decode()
            if 'name="params"' in disposition:
                result = json.loads(part.content)
            else:
                label = part.content
        return r.status_code, result, label
