"""Shared test fixtures and helpers."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

pytest_plugins = ["slow_report", "worker_groups"]


def _cache_bytecode() -> None:
    """With PYTHONDONTWRITEBYTECODE set, every Python process of the suite (bundle runs, scripts, MONAI Label
    servers, torchrun workers) would compile what has no .pyc (monaiseg, the tests, and the whole venv when it
    was installed without scripts/setup_env.sh's bytecode): ~14 s of CPU each for torch / MONAI. Compiled modules
    go to a cache outside the source tree instead (PYTHONPYCACHEPREFIX, for this process and its children); a
    prefix already set is kept."""
    if not sys.flags.dont_write_bytecode or os.environ.get("PYTHONPYCACHEPREFIX"):
        return
    prefix = os.path.join(tempfile.gettempdir(), f"monaiseg-pycache-{os.getuid()}")
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    os.environ["PYTHONPYCACHEPREFIX"] = prefix
    sys.pycache_prefix, sys.dont_write_bytecode = prefix, False


_cache_bytecode()

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MEDSAM2 = REPO / "bundles" / "medsam2"
# the bundles as monaiseg.utils.bundle_contract.discover_bundles finds them (bundles/_template/ is none), without
# importing monaiseg at collection
BUNDLES = sorted(
    p for p in (REPO / "bundles").iterdir() if p.name[0] != "_" and (p / "configs" / "metadata.json").is_file()
)
BUNDLE_IDS = [b.name for b in BUNDLES]

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
NO_CHROMIUM = "chromium / chromedriver absent (apt-get install chromium chromium-driver)"


def headless_chromium(profile: Path, window: str = "1280,900", extra_flags: tuple = (), console_log: bool = False):
    """A selenium driver of headless Debian Chromium with a fresh profile in `profile`, no background networking
    (nothing outside the machine is reached), a 120 s page-load timeout; `console_log` keeps the page's console
    messages (`driver.get_log("browser")`). The caller quits it."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
    flags += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    for flag in (*flags, f"--window-size={window}", *extra_flags, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if console_log:
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=subprocess.DEVNULL), options=options)
    driver.set_page_load_timeout(120)
    return driver


def error_chain(exc: BaseException) -> str:
    """All messages of an exception and its causes (MONAI wraps transform errors)."""
    messages = []
    while exc is not None:
        messages.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return "\n".join(messages)


@pytest.fixture(scope="session")
def synthetic_ct(tmp_path_factory) -> Path:
    """8 small synthetic CT cases (4 train / 2 validation / 2 test); returns the dataset dir."""
    from monaiseg.data import make_synthetic_ct_dataset

    root = tmp_path_factory.mktemp("synthetic_ct")
    make_synthetic_ct_dataset(
        root, num_cases=8, shape=(48, 48, 16), seed=3, splits={"training": 4, "validation": 2, "testing": 2}
    )
    return root


@pytest.fixture(scope="session")
def synthetic_cells(tmp_path_factory) -> Path:
    """Synthetic blood-cell data: 10 smears (128x128), 3 CTC videos of 6 frames, 2 generic scenes."""
    from monaiseg.data import make_synthetic_cell_dataset

    root = tmp_path_factory.mktemp("synthetic_cells") / "cells"
    make_synthetic_cell_dataset(
        root, num_images=10, num_videos=3, shape=(128, 128), video_frames=6, seed=1, num_generic=2
    )
    return root


@pytest.fixture(scope="session")
def synthetic_2d(tmp_path_factory) -> Path:
    """10 grey 64x64 images with organ / lesion / vessel class maps (7/2/1 split); returns the dataset dir."""
    from monaiseg.data import make_synthetic_2d_dataset

    root = tmp_path_factory.mktemp("synthetic_2d") / "scans"
    make_synthetic_2d_dataset(root, num_images=10, shape=(64, 64), seed=2)
    return root


@pytest.fixture(scope="session")
def synthetic_classification(tmp_path_factory) -> Path:
    """Class folders disc / ring / square, 4 RGB 48x48 images each (2/1/1 per class); returns the dataset dir."""
    from monaiseg.data import make_synthetic_classification_dataset

    root = tmp_path_factory.mktemp("synthetic_cls") / "shapes"
    make_synthetic_classification_dataset(root, num_per_class=4, shape=(48, 48), seed=2)
    return root


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` (SQLite backend, artifacts served) on a free loopback port, shared by the
    session (tests use their own experiment names); stopped at the end."""
    tmp_path = tmp_path_factory.mktemp("mlflow_server")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen(  # one worker and no background job runner: 2 CPU cores are shared with the tests
        [
            str(mlflow_cli),
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/mlflow.db",
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(360):
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                break
            except OSError:
                assert proc.poll() is None, "mlflow server exited"
                time.sleep(0.5)
        else:
            pytest.fail("mlflow server did not start within 180 s")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """bundle folder -> the overrides of a tiny run on its synthetic data: `dataset_dir` made by the
    generator named in the bundle's `configs/tiny.json` key `synthetic_dataset` (`{"_target_":
    "module.function", **kwargs}`, called with the output folder first; generated once per distinct
    spec), plus the keys of `synthetic_overrides` (e.g. the class names of the synthetic set).
    `monaiseg.data.tiny_run.TinyRunData`, which scripts/gpu_check.py uses too."""
    from monaiseg.data.tiny_run import TinyRunData

    return TinyRunData(tmp_path_factory.mktemp("tiny_run_data"))
