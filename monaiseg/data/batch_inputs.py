"""Batch-inference inputs: the items of a folder or of a list of files, each with its sidecar files.

As the model zoo's `batch_infer.json` (VISTA3D): a folder `input_dir` with a glob pattern `input_suffix`
(`"*.nii.gz"`, `"**/*.png"`), or `input_list`: a list of paths, a `.txt` file with one path per line, or a JSON
file (a list of paths, or a datalist whose `datalist_key` list holds items); relative paths in a file are
relative to that file's folder. A sidecar is a file next to an input, named from the input's name and extension
by a template: `{"prompts": "{name}_prompts.json", "prompt_label": "{name}_label{ext}"}` gives `ct01.nii.gz` the
keys `prompts` = `ct01_prompts.json` and `prompt_label` = `ct01_label.nii.gz` when those files exist. In a
folder, files that are another input's sidecar are not inputs themselves.

Every input and sidecar is checked here, before any inference runs, so a bad one stops the run with one
error naming it and no output written.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from monai.data import load_decathlon_datalist


def input_name(path: str | os.PathLike) -> tuple[str, str]:
    """(name, extension) of an input as MONAI's `SaveImaged` names its output: `ct01.nii.gz` -> ("ct01",
    ".nii.gz"), `smear.png` -> ("smear", ".png"), a folder (video frames) -> (its name, "")."""
    path = Path(path)
    if path.is_dir():
        return path.name, ""
    ext = "".join(path.suffixes[-2:]) if path.suffix == ".gz" and len(path.suffixes) > 1 else path.suffix
    return path.name[: len(path.name) - len(ext)], ext


def sidecar_paths(image: str | os.PathLike, sidecars: Mapping[str, str]) -> dict[str, Path]:
    """key -> the sidecar file of `image` for each template of `sidecars` (whether it exists or not)."""
    name, ext = input_name(image)
    return {key: Path(image).parent / template.format(name=name, ext=ext) for key, template in sidecars.items()}


def _folder_inputs(input_dir: str | os.PathLike, pattern: str, sidecars: Mapping[str, str]) -> list[dict]:
    folder = Path(input_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"input_dir {folder}: no such folder")
    matches = sorted(p for p in folder.glob(pattern) if not p.name.startswith("."))
    taken = {s for p in matches for s in sidecar_paths(p, sidecars).values()}
    inputs = [p for p in matches if p not in taken]
    if not inputs:
        raise FileNotFoundError(f"no input in folder {folder} matches input_suffix {pattern!r}")
    return [{"image": str(p)} for p in inputs]


def _listed_inputs(input_list: str | os.PathLike | Sequence, datalist_key: str) -> tuple[list[dict], str]:
    """Items of `input_list` and where they were listed (for error messages)."""
    if not isinstance(input_list, (str, os.PathLike)):
        return [dict(p) if isinstance(p, Mapping) else {"image": str(p)} for p in input_list], "input_list"
    source = Path(input_list)
    if not source.is_file():
        raise FileNotFoundError(f"input_list {source}: no such file")
    if source.suffix == ".txt":
        lines = [line.strip() for line in source.read_text().splitlines()]
        paths = [line for line in lines if line and not line.startswith("#")]
        return [{"image": str(source.parent / p)} for p in paths], str(source)
    if source.suffix != ".json":
        raise ValueError(
            f"input_list {source}: give a list of paths, a .txt file (one path per line) or a .json datalist"
        )
    try:
        content = json.loads(source.read_text())
    except ValueError as exc:
        raise ValueError(f"input_list {source}: not valid JSON ({exc})") from None
    if isinstance(content, list):
        return [{"image": str(source.parent / p)} for p in content], str(source)
    if not isinstance(content, dict) or datalist_key not in content:
        raise ValueError(
            f"input_list {source}: neither a JSON list of paths nor a datalist with a {datalist_key!r} list"
        )
    return load_decathlon_datalist(source, data_list_key=datalist_key), str(source)


def batch_items(
    input_dir: str | os.PathLike | None = None,
    input_suffix: str = "*",
    input_list: str | os.PathLike | Sequence | None = None,
    sidecars: Mapping[str, str] | None = None,
    require_sidecar: bool = False,
    datalist_key: str = "testing",
) -> list[dict]:
    """Inference items `[{"image": path, <sidecar key>: path, ...}]` for the inputs of `input_dir` matching
    `input_suffix` (sorted) or of `input_list` (in its order); give one of the two. A sidecar key is set when
    its file exists and the item does not already have that key (a datalist item may name its own prompts).
    `require_sidecar`: every input needs at least one of the `sidecars` (prompted bundles).

    FileNotFoundError naming the folder and pattern when nothing matches, or naming a listed input or an
    input without its required sidecar; ValueError when two inputs share a name (their outputs would
    overwrite each other)."""
    sidecars = dict(sidecars or {})
    if (input_dir is None) == (input_list is None):
        raise ValueError("batch inference needs either input_dir (with input_suffix) or input_list, not both")
    if input_dir is not None:
        items, source = _folder_inputs(input_dir, input_suffix, sidecars), str(input_dir)
    else:
        items, source = _listed_inputs(input_list, datalist_key)  # type: ignore[arg-type]
        if not items:
            raise ValueError(f"{source}: lists no input")
    names: dict[str, str] = {}
    for item in items:
        image = item.get("image")
        if not image or not Path(image).exists():
            raise FileNotFoundError(f"input {image} (listed in {source}) not found")
        for key, path in sidecar_paths(image, sidecars).items():
            if key not in item and path.is_file():
                item[key] = str(path)
        for key in sidecars:
            if key in item and not Path(item[key]).exists():
                raise FileNotFoundError(f"{image}: its {key} file {item[key]} not found")
        if require_sidecar and not any(key in item for key in sidecars):
            expected = " or ".join(str(p) for p in sidecar_paths(image, sidecars).values())
            raise FileNotFoundError(f"{image}: no prompts for this input; expected {expected} next to it")
        name = input_name(image)[0]
        if name in names:
            raise ValueError(
                f"inputs {names[name]} and {image} have the same name {name!r}: their outputs would overwrite "
                "each other; rename one"
            )
        names[name] = str(image)
    return items
