#!/usr/bin/env bash
# Create/refresh .venv from the committed lock (requirements.lock: exact versions + hashes).
# Idempotent: does nothing when .venv already matches the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
UV_VERSION=0.13.9
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
    python3 -m pip install --quiet "uv==$UV_VERSION"
fi
stamp=.venv/.installed-lock
if [ -x .venv/bin/python ] && cmp -s requirements.lock "$stamp" 2>/dev/null; then
    # the package's own bytecode (editable install: not compiled by uv); only changed files, well under a second
    .venv/bin/python -m compileall -q monaiseg >/dev/null || true
    exit 0
fi
echo "setting up .venv from requirements.lock (first run downloads a few GB: torch with its CUDA libraries)" >&2
[ -x .venv/bin/python ] || uv venv --quiet --python 3.11 .venv
# bytecode compiled now: these machines set PYTHONDONTWRITEBYTECODE, so an uncompiled venv re-parses torch and
# MONAI in every process (`import monai` 19 s instead of 8 s on 2 cores)
uv pip sync --quiet --python .venv/bin/python --require-hashes --compile-bytecode requirements.lock
uv pip install --quiet --python .venv/bin/python --no-deps -e .
.venv/bin/python -m compileall -q monaiseg >/dev/null
cp requirements.lock "$stamp"
