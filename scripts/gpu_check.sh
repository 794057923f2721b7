#!/usr/bin/env bash
# One prepared GPU check (at most 8 minutes on one GPU): writes gpu_report.json in the current folder.
# Usage: bash scripts/gpu_check.sh [--dry-run] [--out FILE] [--budget-s S] (see scripts/gpu_check.py --help)
# PYTHON: the interpreter (default: the repository's .venv when present, else python3).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-}"
if [[ -z "$python" ]]; then
    if [[ -x "$here/.venv/bin/python" ]]; then python="$here/.venv/bin/python"; else python=python3; fi
fi
exec "$python" "$here/scripts/gpu_check.py" "$@"
