#!/usr/bin/env bash
# The test suite (what CI runs): sets up .venv from the lock when needed, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
