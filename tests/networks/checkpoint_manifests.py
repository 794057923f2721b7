"""Key names and tensor shapes of released checkpoints, committed in tests/networks/manifests/ (sources in its
README), so the checkpoint-layout tests run on any clone."""

from __future__ import annotations

import json
from pathlib import Path

MANIFESTS = Path(__file__).resolve().with_name("manifests")


def manifest(name: str) -> dict:
    """The manifest `name` (e.g. "sam_vit_b.json") as a dict."""
    return json.loads((MANIFESTS / name).read_text())
