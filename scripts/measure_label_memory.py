"""Memory of a `monaiseg label serve` server under oversized requests (issue 26, item 6): a measurement,
not a timed test.

`measure(server, folder, concurrent=4)` sends `concurrent` oversized requests at once to a running
`LabelServer` (half uploads of a NIfTI header claiming 2000x2000x300 int16 followed by 4 KiB, half infers
with a real 2000x2000x300 uint8 volume, gzipped to ~1.2 MB), samples the server's resident memory (its
process and children, every 20 ms) meanwhile, then checks that it still answers normally (GET /info/ and
one infer). `bytes_per_voxel(server, folder)` measures the peak growth of one 3D infer (medsam2) per
voxel of its image, the figure behind the default `--max-voxels`.

    .venv/bin/python scripts/measure_label_memory.py [--concurrent 4] [--bound-mib 300]

starts its own loopback server (tiny copies of medsam2 and unet_cells), prints the figures as JSON and
exits 1 when the peak grew by more than `--bound-mib` or a request was not refused with 413.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nibabel as nib
import numpy as np
import psutil
import requests

REPO = Path(__file__).resolve().parents[1]
MIB = 2**20


def rss(pid: int) -> int:
    """Resident bytes of process `pid` and its children."""
    proc = psutil.Process(pid)
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            total += child.memory_info().rss
    return total


class Sampler:
    """`with Sampler(pid) as s:` the peak resident bytes of `pid` while the block runs (`s.peak`)."""

    def __init__(self, pid: int, every: float = 0.02):
        self.pid, self.every, self.peak = pid, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss(self.pid))
            time.sleep(self.every)

    def __enter__(self) -> Sampler:
        self.peak = rss(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss(self.pid))


def nifti_header(shape: tuple[int, ...], dtype) -> bytes:
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_data_offset(352)
    return header.binaryblock + b"\0" * 4


def oversized_files(folder: Path) -> tuple[Path, Path]:
    """(a header claiming 2000x2000x300 int16 with 4 KiB of data, a real 2000x2000x300 uint8 volume),
    both .nii.gz, written in 64 MiB blocks (never held whole)."""
    folder.mkdir(parents=True, exist_ok=True)
    claim, real = folder / "claims_2000x2000x300.nii.gz", folder / "real_2000x2000x300.nii.gz"
    claim.write_bytes(gzip.compress(nifti_header((2000, 2000, 300), np.int16) + b"\0" * 4096))
    if not real.is_file():
        block = b"\0" * (64 * MIB)
        with gzip.open(real, "wb", compresslevel=1) as f:
            f.write(nifti_header((2000, 2000, 300), np.uint8))
            left = 2000 * 2000 * 300
            while left:
                f.write(block[: min(left, len(block))])
                left -= min(left, len(block))
    return claim, real


def measure(server, folder: Path, concurrent: int = 4) -> dict:
    """Figures of `concurrent` oversized requests at once (module docstring), sizes in MiB."""
    claim, real = oversized_files(folder)
    pid = server.process.pid

    def send(n: int) -> tuple[int, str]:
        if n % 2 == 0:
            with open(claim, "rb") as f:
                r = requests.put(
                    f"{server.url}/datastore/image", params={"image": f"big{n}"}, files={"file": f}, timeout=300
                )
        else:
            with open(real, "rb") as f:
                r = requests.post(
                    f"{server.url}/infer/medsam2",
                    data={"params": json.dumps({"foreground": [[1, 1, 1]]})},
                    files={"file": ("real.nii.gz", f)},
                    timeout=300,
                )
        return r.status_code, r.json().get("detail", "") if r.headers.get("content-type", "").startswith(
            "application/json"
        ) else r.text[:200]

    time.sleep(1)
    before = rss(pid)
    start = time.perf_counter()
    with Sampler(pid) as sampler, ThreadPoolExecutor(concurrent) as pool:
        answers = list(pool.map(send, range(concurrent)))
    seconds = time.perf_counter() - start
    info = requests.get(f"{server.url}/info/", timeout=60).status_code
    normal = server.infer("unet_cells", "rgb")
    time.sleep(1)
    return {
        "concurrent": concurrent,
        "statuses": [a[0] for a in answers],
        "reasons": sorted({a[1] for a in answers}),
        "seconds": round(seconds, 2),
        "rss_before_mib": round(before / MIB),
        "rss_peak_mib": round(sampler.peak / MIB),
        "rss_growth_mib": round((sampler.peak - before) / MIB),
        "rss_after_mib": round(rss(pid) / MIB),
        "info_after": info,
        "infer_after": normal[0],
        "infer_after_detail": None if normal[0] == 200 else normal[1],
    }


def bytes_per_voxel(server, folder: Path, shape: tuple[int, int, int] = (256, 256, 64)) -> dict:
    """Peak resident growth of one medsam2 infer on a `shape` int16 volume uploaded with the request, per voxel."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"volume_{'x'.join(map(str, shape))}.nii.gz"
    rng = np.random.default_rng(0)
    nib.save(nib.Nifti1Image(rng.integers(-1000, 1000, shape, dtype=np.int16), np.eye(4)), path)
    pid = server.process.pid
    time.sleep(1)
    before = rss(pid)
    with Sampler(pid) as sampler, open(path, "rb") as f:
        r = requests.post(
            f"{server.url}/infer/medsam2",
            data={"params": json.dumps({"foreground": [[shape[0] // 2, shape[1] // 2, shape[2] // 2]]})},
            files={"file": (path.name, f)},
            timeout=600,
        )
    voxels = int(np.prod(shape))
    return {
        "shape": list(shape),
        "status": r.status_code,
        "rss_growth_mib": round((sampler.peak - before) / MIB),
        "bytes_per_voxel": round((sampler.peak - before) / voxels, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--concurrent", type=int, default=4)
    p.add_argument("--bound-mib", type=float, default=300, help="largest allowed growth of the server's memory")
    args = p.parse_args(argv)
    sys.path[:0] = [str(REPO)]
    from PIL import Image

    from monaiseg.label.server import LabelServer, tiny_copy, tiny_overrides

    with tempfile.TemporaryDirectory(prefix="measure-label-") as tmp:
        root = Path(tmp)
        tiny_copy(REPO / "bundles" / "medsam2", root / "bundles" / "medsam2", {"image_size": 64})
        tiny_copy(REPO / "bundles" / "unet_cells", root / "bundles" / "unet_cells")
        rgb = (np.random.default_rng(0).random((48, 40, 3)) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(root / "rgb.png")
        overrides = tiny_overrides(root / "bundles")
        with LabelServer(root / "studies", [root / "bundles"], overrides=overrides) as server:
            server.upload("rgb", root / "rgb.png")
            figures = {"oversized": measure(server, root / "files", args.concurrent)}
            figures["per_voxel"] = bytes_per_voxel(server, root / "files")
    print(json.dumps(figures, indent=2))
    over = figures["oversized"]
    ok = over["rss_growth_mib"] <= args.bound_mib and set(over["statuses"]) == {413}
    ok = ok and over["info_after"] == 200 and over["infer_after"] == 200
    print(f"growth {over['rss_growth_mib']} MiB (bound {args.bound_mib:g}): {'ok' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
