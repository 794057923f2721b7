"""The synthetic data of a bundle's tiny run (`configs/tiny.json`), for the tests and `scripts/gpu_check.py`.

A bundle's `tiny.json` names its generator under `synthetic_dataset` (`{"_target_": "module.function",
**kwargs}`, called with the output folder first) and, optionally, `synthetic_overrides`: keys a run on
that set needs (e.g. the class names of the synthetic set).
"""

from __future__ import annotations

import json
from pathlib import Path

from monai.utils import optional_import


class TinyRunData:
    """bundle folder -> the overrides of a tiny run on its synthetic data: `dataset_dir` made under `root`
    by the generator of the bundle's `configs/tiny.json` (once per distinct generator spec), plus the keys of
    `synthetic_overrides`. ValueError, naming the bundle, when `tiny.json` has no `synthetic_dataset`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.made: dict[str, Path] = {}  # spec as sorted JSON -> its folder

    def __call__(self, bundle: str | Path) -> dict:
        bundle = Path(bundle)
        tiny = json.loads((bundle / "configs" / "tiny.json").read_text())
        spec = tiny.get("synthetic_dataset")
        if not spec:
            raise ValueError(f"{bundle.name}: configs/tiny.json has no `synthetic_dataset` generator")
        key = json.dumps(spec, sort_keys=True)
        if key not in self.made:
            kwargs = dict(spec)
            module, name = kwargs.pop("_target_").rsplit(".", 1)
            generator, _ = optional_import(module, name=name)
            out = self.root / f"{bundle.name}_data_{len(self.made)}"
            generator(out, **kwargs)
            self.made[key] = out
        return {"dataset_dir": str(self.made[key]), **tiny.get("synthetic_overrides", {})}
