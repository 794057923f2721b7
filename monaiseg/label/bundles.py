"""Bundle discovery for the MONAI Label app: which bundles to serve, as which task type.

A bundle is served when its `configs/metadata.json` sets `"supported_apps": {"monai-label": TASK}`
(TASK: interactive-2d, interactive-3d, segmentation, classification) and `models/model.pt`
exists, or when it also sets `"monai-label-default-weights": "network_def"` (its `network_def`
loads released weights by itself, e.g. lite_medsam: until a `model.pt` is trained, that network is
served as configured); otherwise it is skipped with a reason (the app answers requests to it with a 4xx).

Config overrides are aimed at one bundle each (`parse_overrides`: "lite_medsam:label_test.json"), never
merged into a bundle because a file of that name happens to exist there, and `weights_source` says
what a served network runs on: its trained `models/model.pt`, the released file its builder loads,
or random initialisation (served only when asked for).
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from monai.bundle import ConfigParser

from monaiseg.networks import lite_medsam_asset
from monaiseg.networks.lite_medsam import file_sha256
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
    {name: reason skipped}); a reason names files inside the bundle from its name ("b/models/model.pt"), not
    from the server's folders, since clients read it."""
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
            skipped[root.name] = str(exc).replace(f"{root}{os.sep}", f"{root.name}/")
            continue
        served[info.name] = info
    return served, skipped


CONFIG_FILE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}\.(json|yaml|yml)")
# what "default" as a checkpoint means, per network builder (`network_def._target_`)
RELEASED_WEIGHTS = {"monaiseg.networks.build_lite_medsam": lite_medsam_asset}
NO_CHECKPOINT = (None, "", "none", "null", "None")


def parse_overrides(
    specs: list[str], served: dict[str, BundleInfo], skipped: dict[str, str] | None = None
) -> dict[str, list[str]]:
    """{bundle name: [config file, ...]} from "NAME:FILE[,FILE...]" specs, each file checked to be
    a plain file name in that served bundle's configs/ folder (specs for `skipped` bundles are
    left out); ValueError naming the spec otherwise."""
    aimed: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, files = spec.partition(":")
        if not sep or not name or not files:
            raise ValueError(
                f"override {spec!r}: aim it at a bundle, as BUNDLE:FILE[,FILE] (e.g. lite_medsam:tiny.json)"
            )
        if name in (skipped or {}):
            continue
        if name not in served:
            raise ValueError(f"override {spec!r}: bundle {name!r} is not served (served: {sorted(served)})")
        for file in files.split(","):
            if not CONFIG_FILE.fullmatch(file):
                raise ValueError(f"override {spec!r}: {file!r} is not a config file name (NAME.json in configs/)")
            if not (served[name].root / "configs" / file).is_file():
                raise ValueError(f"override {spec!r}: {served[name].root / 'configs' / file} not found")
            aimed.setdefault(name, []).append(file)
    return aimed


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    return file_sha256(path)


def weights_sha256(path: str | Path) -> str:
    """sha256 of a weights file, hashed once per version (path, size, mtime): `/info` asks for it often."""
    st = os.stat(path)
    return _sha256(str(path), st.st_size, st.st_mtime_ns)


def weights_source(info: BundleInfo, config: dict) -> dict:
    """What the bundle's network runs on, given its merged inference `config`:
    {"source": "trained", "file": "models/model.pt" (no server path in /info), "sha256"},
    {"source": "released", "file": name,
    "sha256"} (the file its builder loads for checkpoint "default", or a named checkpoint file), or
    {"source": "random"} (no checkpoint: random initialisation)."""
    if info.weights.is_file():
        return {"source": "trained", "file": "models/model.pt", "sha256": weights_sha256(info.weights)}
    if not info.default_weights:
        return {"source": "none"}
    parser = ConfigParser(config)
    checkpoint = parser.get_parsed_content("checkpoint") if "checkpoint" in parser else "default"
    if checkpoint in NO_CHECKPOINT:
        return {"source": "random"}
    if checkpoint == "default":
        target = config.get("network_def", {})
        builder = RELEASED_WEIGHTS.get(target.get("_target_", "") if isinstance(target, dict) else "")
        if builder is None:
            raise ValueError(f"bundle {info.name}: checkpoint 'default' of a network with no known released file")
        path = builder()
    else:
        path = Path(str(checkpoint))
    return {"source": "released", "file": Path(path).name, "sha256": weights_sha256(path)}


def describe_weights(source: dict) -> str:
    """One line for the log: what `weights_source` found."""
    if source["source"] == "random":
        return "RANDOM initialisation (no checkpoint; served because --random-init names it)"
    if source["source"] == "none":
        return "no weights"
    return f"{source['source']} weights {source['file']} (sha256 {source['sha256']})"
