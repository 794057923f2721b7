"""Check a MONAI Label server as a hospital network would meet it (issue 26): every `case_*` function of
the suite's tests/label/test_label_*.py (confinement, uploads, clean errors, weights; login, roles and
origins against a server with a local realm), plus 4 clients x 10 lite_medsam requests on its released
weights (byte-identical, 0 errors).

Bounded and loopback only: two `monaiseg label serve` servers on free 127.0.0.1 ports (the suite's sample
server, and one with a local login realm), each stopped by its process id (`LabelServer`) when its
cases are done; the whole run stops after `--timeout` seconds. Prints one line per case and
`N passed, M failed` last; exits 1 when a case failed.

    .venv/bin/python scripts/check_label_server.py [--clients 4] [--requests 10] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AUTH_CASES = "test_label_auth"  # the cases that need a server with login; the others take the sample server


def cases_of(module_name: str) -> list[Callable]:
    """The `case_*` functions of tests/label/<module_name>.py in source order."""
    module = importlib.import_module(f"tests.label.{module_name}")
    found = [f for name, f in vars(module).items() if name.startswith("case_") and callable(f)]
    return sorted(found, key=lambda f: f.__code__.co_firstlineno)


def run_cases(cases: list[tuple[str, Callable[[], None]]], results: list[tuple[str, str]]) -> None:
    for name, call in cases:
        start = time.perf_counter()
        try:
            call()
            outcome = "passed"
        except Exception as exc:  # noqa: BLE001 - any failure of a case is reported, the others still run
            where = traceback.extract_tb(exc.__traceback__)[-1]
            outcome = f"FAILED: {type(exc).__name__}: {str(exc)[:300]} (at {Path(where.filename).name}:{where.lineno})"
        results.append((name, outcome))
        print(f"{name}: {outcome} ({time.perf_counter() - start:.1f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--requests", type=int, default=10, help="lite_medsam requests per client")
    p.add_argument("--timeout", type=int, default=1500, help="seconds the whole check may take")
    p.add_argument("--only", nargs="+", help="run only the cases whose name contains one of these")
    args = p.parse_args(argv)
    sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the suite's case functions and its conftest

    def over_time(*_) -> None:
        raise TimeoutError(f"the check took more than {args.timeout} s")

    signal.signal(signal.SIGALRM, over_time)
    signal.alarm(args.timeout)
    from tests.label.conftest import sample_server
    from tests.label.test_label_auth import auth_server
    from tests.label.test_label_weights import case_concurrent_real_weights

    def wanted(name: str) -> bool:
        return not args.only or any(word in name for word in args.only)

    results: list[tuple[str, str]] = []
    modules = sorted(p.stem for p in (REPO / "tests" / "label").glob("test_label_*.py") if p.stem != AUTH_CASES)
    sample = [(f"{m}.{f.__name__}", f) for m in modules for f in cases_of(m) if f is not case_concurrent_real_weights]
    load = f"{args.clients} clients x {args.requests} lite_medsam requests"
    sample.append((load, lambda server: case_concurrent_real_weights(server, args.clients, args.requests)))
    auth = [(f"{AUTH_CASES}.{f.__name__}", f) for f in cases_of(AUTH_CASES)]
    with tempfile.TemporaryDirectory(prefix="check-label-") as tmp:
        try:
            for start, cases in ((sample_server, sample), (auth_server, auth)):
                cases = [(n, f) for n, f in cases if wanted(n)]
                if cases:  # each server started only for cases that need it, stopped by its pid after them
                    with start(Path(tmp) / start.__name__) as server:
                        run_cases([(n, lambda f=f: f(server)) for n, f in cases], results)
        except TimeoutError as exc:
            results.append(("check", f"FAILED: {exc}"))
            print(f"check: FAILED: {exc}", flush=True)
        finally:
            signal.alarm(0)
    failed = sum(outcome != "passed" for _, outcome in results)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
