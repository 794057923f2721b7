#!/usr/bin/env bash
# The main job: MedSAM2 demo on synthetic CT (sets up .venv from the lock when needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
exec .venv/bin/python scripts/demo_medsam2.py "$@"
