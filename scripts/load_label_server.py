"""Load check of the MONAI Label server: N /infer requests, C at a time, on loopback only.

Starts `monaiseg label serve` on a free 127.0.0.1 port over a temporary datastore with synthetic
images, first runs each distinct request once sequentially (the reference), then N requests from
C threads, and stops the server. Prints p50 / p95 latency, errors, and whether every concurrent
result equals the sequential one.

    .venv/bin/python scripts/load_label_server.py --bundle bundles/sam_med2d --tiny --requests 100 --concurrency 8
"""

from __future__ import annotations

import argparse
import hashlib
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from monaiseg.label.server import LabelServer, tiny_copy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default="bundles/sam_med2d", help="a 2D interactive or segmentation bundle")
    p.add_argument("--tiny", action="store_true", help="serve a copy with the tiny config and random weights")
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--images", type=int, default=2)
    args = p.parse_args()
    bundle = Path(args.bundle).resolve()
    with tempfile.TemporaryDirectory(prefix="label-load-") as tmp:
        tmp = Path(tmp)
        served = tiny_copy(bundle, tmp / "bundles" / bundle.name) if args.tiny else bundle
        rng = np.random.default_rng(0)
        images = []
        for n in range(args.images):
            path = tmp / f"img{n}.png"
            Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(path)
            images.append(path)
        # distinct requests: image x prompt; the N requests cycle through them
        jobs = [
            (f"img{n}", {"foreground": [[10 + 7 * k, 20 + 5 * k]], "roi": [5, 8, 40 + k, 50]})
            for n in range(args.images)
            for k in range(4)
        ]
        with LabelServer(
            tmp / "studies", [served], overrides=["tiny.json", "label_test.json"] if args.tiny else []
        ) as server:
            for n, path in enumerate(images):
                server.upload(f"img{n}", path)
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
