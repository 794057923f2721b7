"""Bundle discovery for the MONAI Label app: which bundles to serve, as which task type.

A bundle is served when its `configs/metadata.json` sets `"supported_apps": {"monai-label": TASK}`
(TASK: interactive-2d, interactive-3d, segmentation, classification) and `models/model.pt`
exists, or when it also sets `"monai-label-default-weights": "network_def"` (its `network_def`
loads released weights by itself, e.g. lite_medsam: until a `model.pt` is trained, that network is
served as configured); otherwise it is skipped with a reason (the app answers requests to it with a 4xx).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from monaiseg.utils.bundle_contract import discover_bundles

TASK_TYPES = ("interactive-2d", "interactive-3d", "segmentation", "classification")
DEFAULT_WEIGHTS_KEY = "monai-label-default-weights"  # in supported_apps; value "network_def"
MAX_LABEL_NAME = 40  # longer channel_def entries are descriptions, not label names


@dataclass
class BundleInfo:
    """A servable bundle: `name` (folder name), `root`, `task` (one of TASK_TYPES), `labels`
    {name: value} from `pred.channel_def` (background left out), `classes` (classification
    bundles: class names in output order)."""

    name: str
    root: Path
    task: str
    labels: dict[str, int] = field(default_factory=dict)
    classes: list[str] = field(default_factory=list)
    description: str = ""
    dimension: int = 2
    default_weights: bool = False  # without models/model.pt, serve network_def with its own checkpoint

    @property
    def weights(self) -> Path:
        return self.root / "models" / "model.pt"


def _channel_def(metadata: dict) -> dict[int, str]:
    pred = metadata.get("network_data_format", {}).get("outputs", {}).get("pred", {})
    return {int(k): str(v) for k, v in pred.get("channel_def", {}).items()}


def read_bundle(root: str | Path) -> BundleInfo:
    """BundleInfo of the bundle at `root`; ValueError naming the file when it cannot be served."""
    root = Path(root).resolve()
    meta_file = root / "configs" / "metadata.json"
    try:
        metadata = json.loads(meta_file.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{meta_file}: not a readable metadata file ({exc})") from None
    apps = metadata.get("supported_apps") or {}
    task = apps.get("monai-label")
    if task is None:
        raise ValueError(f'{meta_file}: no "supported_apps": {{"monai-label": ...}} entry')
    if task not in TASK_TYPES:
        raise ValueError(f"{meta_file}: monai-label task {task!r} is not one of {TASK_TYPES}")
    channels = _channel_def(metadata)
    image = metadata.get("network_data_format", {}).get("inputs", {}).get("image", {})
    info = BundleInfo(
        name=root.name,
        root=root,
        task=task,
        description=str(metadata.get("task", root.name)),
        dimension=3 if task == "interactive-3d" or len(image.get("spatial_shape", [])) == 3 else 2,
        default_weights=apps.get(DEFAULT_WEIGHTS_KEY) == "network_def",
    )
    if task == "classification":
        info.classes = [channels[k] for k in sorted(channels)]
    else:
        info.labels = {
            v: k
            for k, v in sorted(channels.items())
            if k > 0 and v.lower() != "background" and len(v) <= MAX_LABEL_NAME
        }
        if not info.labels:
            info.labels = {"object": 1}
    if not info.weights.is_file() and not info.default_weights:
        raise FileNotFoundError(f"{info.weights} not found (train the bundle or place its weights there)")
    return info


def discover(paths: list[str | Path]) -> tuple[dict[str, BundleInfo], dict[str, str]]:
    """Servable bundles among `paths` (bundle folders, or folders of bundles) -> ({name: info},
    {name: reason skipped})."""
    roots = []
    for path in map(Path, paths):
        if (path / "configs" / "metadata.json").is_file():
            roots.append(path)
        else:
            roots += discover_bundles(path)  # bundles/_template/ is no bundle
    served, skipped = {}, {}
    for root in roots:
        try:
            info = read_bundle(root)
        except (ValueError, FileNotFoundError) as exc:
            skipped[root.name] = str(exc)
            continue
        served[info.name] = info
    return served, skipped
