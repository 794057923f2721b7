#!/usr/bin/env bash
# The main job: LiteMedSAM with the official pretrained weights on synthetic CT, zero-shot then
# fine-tuned (sets up .venv from the lock when needed). `--image FILE --box X0 Y0 X1 Y1 [--slice K]`
# segments your own image; `bash scripts/demo.sh --medsam2` runs the MedSAM2 (random weights) demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
if [ "${1:-}" = "--medsam2" ]; then
    shift
    exec .venv/bin/python scripts/demo_medsam2.py "$@"
fi
exec .venv/bin/python scripts/demo_lite_medsam.py "$@"
