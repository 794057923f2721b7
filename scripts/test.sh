#!/usr/bin/env bash
# The test suite (what CI runs): sets up .venv from the lock when needed, then pytest on 2 xdist workers
# (tests/worker_groups.py: tests sharing a costly fixture stay on one worker; MONAISEG_TEST_WORKERS=0 runs serially).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
workers="${MONAISEG_TEST_WORKERS:-2}"
exec .venv/bin/python -m pytest -q -p no:cacheprovider -n "$workers" --durations=15 "$@"
