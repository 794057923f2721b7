"""Load check of the MONAI Label server: N /infer requests, C at a time, on loopback only.

Starts `monaiseg label serve` on a free 127.0.0.1 port over a temporary datastore with synthetic
images, first runs each distinct request once sequentially (the reference), then N requests from
C threads, and stops the server. Prints p50 / p95 latency, errors, and whether every concurrent
result equals the sequential one. With `--orthanc`, the datastore is a throwaway Orthanc
(`scripts/orthanc.sh`) holding synthetic CT series (`scripts/make_dicom_ct.py`) and the bundle is a 3D
one (e.g. medsam2): the clinical path under load.

    .venv/bin/python scripts/load_label_server.py --bundle bundles/sam_med2d --tiny --requests 100 --concurrency 8
    .venv/bin/python scripts/load_label_server.py --bundle bundles/medsam2 --tiny --orthanc \
        --requests 40 --concurrency 4
"""

from __future__ import annotations

import argparse
import hashlib
import runpy
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import requests
from PIL import Image

from monaiseg.label.server import LabelServer, free_port, tiny_copy, tiny_overrides

SCRIPTS = Path(__file__).resolve().parent


def start_orthanc(folder: Path) -> tuple[subprocess.Popen, str]:
    """A throwaway Orthanc on a free loopback port; -> (its process, its DICOMweb URL)."""
    port = free_port()
    proc = subprocess.Popen(
        ["bash", str(SCRIPTS / "orthanc.sh"), str(folder), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            if requests.get(f"http://127.0.0.1:{port}/system", timeout=2).ok:
                return proc, f"http://127.0.0.1:{port}/dicom-web"
        except requests.ConnectionError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("Orthanc did not start (apt-get install orthanc orthanc-dicomweb)")


def main() -> None:
    orthanc: list[subprocess.Popen] = []
    try:
        run(orthanc)
    finally:
        for proc in orthanc:
            proc.terminate()
            proc.wait()


def run(orthanc: list[subprocess.Popen]) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default="bundles/sam_med2d", help="a 2D interactive or segmentation bundle")
    p.add_argument("--tiny", action="store_true", help="serve a copy with the tiny config and random weights")
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--orthanc", action="store_true", help="a throwaway Orthanc with CT series as the datastore")
    args = p.parse_args()
    bundle = Path(args.bundle).resolve()
    with tempfile.TemporaryDirectory(prefix="label-load-") as tmp:
        tmp = Path(tmp)
        served = tiny_copy(bundle, tmp / "bundles" / bundle.name) if args.tiny else bundle
        if args.orthanc:
            proc, studies = start_orthanc(tmp / "orthanc")
            orthanc.append(proc)
            make_dicom_ct = runpy.run_path(str(SCRIPTS / "make_dicom_ct.py"))["main"]
            images = [
                make_dicom_ct(
                    ["--out", str(tmp / f"ct{n}"), "--size", "64", "80", "6", "--seed", str(n), "--stow", studies]
                )
                for n in range(args.images)
            ]
            prompts = [{"foreground": [[20 + 8 * k, 28 + 6 * k, 1 + k]]} for k in range(4)]
        else:
            rng = np.random.default_rng(0)
            images = []
            for n in range(args.images):
                path = tmp / f"img{n}.png"
                Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(path)
                images.append(f"img{n}")
            prompts = [{"foreground": [[10 + 7 * k, 20 + 5 * k]], "roi": [5, 8, 40 + k, 50]} for k in range(4)]
        # distinct requests: image x prompt; the N requests cycle through them
        jobs = [(image, prompt) for image in images for prompt in prompts]
        options = ["--app-dir", str(tmp / "app")] if args.orthanc else []
        with LabelServer(
            studies if args.orthanc else tmp / "studies",
            [served],
            overrides=tiny_overrides(tmp / "bundles") if args.tiny else [],
            log=tmp / "server.log",
            options=options,
        ) as server:
            if not args.orthanc:
                for image in images:
                    server.upload(image, tmp / f"{image}.png")
            model = bundle.name

            def call(job):
                start = time.perf_counter()
                try:
                    status, result, label = server.infer(model, *job)
                except Exception as exc:  # a connection error counts as an error
                    return time.perf_counter() - start, str(exc), None
                return time.perf_counter() - start, status, hashlib.sha256(label or b"").hexdigest()

            reference = [call(job) for job in jobs]
            if any(r[1] != 200 for r in reference):
                raise SystemExit(f"sequential reference failed: {[r[1] for r in reference]}")
            work = [(i % len(jobs), jobs[i % len(jobs)]) for i in range(args.requests)]
            start = time.perf_counter()
            with ThreadPoolExecutor(args.concurrency) as pool:
                results = list(pool.map(lambda w: (w[0], call(w[1])), work))
            wall = time.perf_counter() - start
        latencies = np.array([r[1][0] for r in results])
        errors = sum(r[1][1] != 200 for r in results)
        identical = all(call_result[2] == reference[i][2] for i, call_result in results)
        print(f"model {model}: {args.requests} requests, {args.concurrency} concurrent, {wall:.1f} s wall")
        print(
            f"latency p50 {np.percentile(latencies, 50):.3f} s, p95 {np.percentile(latencies, 95):.3f} s "
            f"(sequential mean {np.mean([r[0] for r in reference]):.3f} s)"
        )
        print(f"errors {errors}; identical to sequential: {identical}")
        if errors or not identical:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
