"""Model-zoo conformance of every bundle in bundles/ (what the MONAI model zoo's CI checks).

For each bundle: the contract's files and config keys are present (`monaiseg.utils.bundle_contract`, the one
place that declares them); metadata.json validates against the schema
(the MONAI model zoo's meta_schema_20240725.json, copied into scripts/schemas/ for offline checks)
and its version is a key of its changelog;
`verify_net_in_out` passes with the tiny override; the network exports to TorchScript with
`ckpt_export` (tracing the prompt-free forward) and the reloaded module gives the eager output;
the JSON files are formatted like the zoo's pre-commit (4-space indent, key order kept); no
committed file in the bundle is over 1 MB. Every bundle exports; none is excluded.

    .venv/bin/python scripts/verify_bundles.py [BUNDLE_DIR ...] [--schema PATH] [--checks NAME ...]

Prints one line per bundle and check (ok / FAIL) and exits 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from monaiseg.utils import bundle_contract

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCHEMA = REPO / "scripts" / "schemas" / "meta_schema_20240725.json"
REQUIRED = list(bundle_contract.REQUIRED_FILES)
MAX_FILE_BYTES = 1 << 20


class BundleCheckError(AssertionError):
    """A bundle fails a conformance check."""


def discover_bundles(root: Path = REPO / "bundles") -> list[Path]:
    """Every folder of `root` holding configs/metadata.json, sorted by name; bundles/_template/ (and any folder
    starting with `_`) is not a bundle."""
    return bundle_contract.discover_bundles(root)


def metadata(bundle: Path) -> dict:
    return json.loads((bundle / "configs" / "metadata.json").read_text())


def check_files(bundle: Path) -> str:
    missing = bundle_contract.missing_files(bundle)
    if missing:
        raise BundleCheckError(f"{bundle.name}: missing {', '.join(missing)} (monaiseg.utils.bundle_contract)")
    return f"{len(REQUIRED)} files"


def check_keys(bundle: Path) -> str:
    missing = bundle_contract.missing_keys(bundle)
    if missing:
        raise BundleCheckError(f"{bundle.name}: missing {'; '.join(missing)} (monaiseg.utils.bundle_contract)")
    return "required config keys"


def check_version(bundle: Path) -> str:
    meta = metadata(bundle)
    if meta.get("version") not in meta.get("changelog", {}):
        raise BundleCheckError(f"{bundle.name}: metadata version {meta.get('version')!r} is not a key of changelog")
    return meta["version"]


def check_schema(bundle: Path, schema: Path) -> str:
    from monai.bundle import verify_metadata

    if not schema.is_file():
        raise FileNotFoundError(f"metadata schema {schema} not found (offline copy of meta_schema_20240725.json)")
    verify_metadata(meta_file=str(bundle / "configs" / "metadata.json"), filepath=str(schema))
    return schema.name


def check_json_format(bundle: Path) -> str:
    """Every JSON file is what `json.dumps(indent=4)` writes (key order kept) plus a newline."""
    files = sorted(bundle.rglob("*.json"))
    for path in files:
        text = path.read_text()
        try:
            expected = json.dumps(json.loads(text), indent=4) + "\n"
        except json.JSONDecodeError as exc:
            raise BundleCheckError(f"{path}: not valid JSON ({exc})") from exc
        if text != expected:
            raise BundleCheckError(
                f"{path}: not formatted like the model zoo's pre-commit (4-space indent, "
                "keys in their order, newline at the end)"
            )
    return f"{len(files)} JSON files"


def check_file_sizes(bundle: Path) -> str:
    listed = subprocess.run(["git", "ls-files", "-z", str(bundle)], cwd=REPO, capture_output=True, check=True).stdout
    paths = [REPO / p for p in listed.decode().split("\0") if p]
    big = [
        f"{p.relative_to(REPO)} ({p.stat().st_size} bytes)"
        for p in paths
        if p.is_file() and p.stat().st_size > MAX_FILE_BYTES
    ]
    if big:
        raise BundleCheckError(f"{bundle.name}: committed files over 1 MB: {', '.join(big)}")
    return f"{len(paths)} committed files <= 1 MB"


def tiny_configs(bundle: Path, *names: str) -> list[str]:
    return [str(bundle / "configs" / n) for n in (*names, "tiny.json")]


def check_net_in_out(bundle: Path, workdir: Path) -> str:
    from monai.bundle import verify_net_in_out

    verify_net_in_out(
        net_id="network_def",
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=tiny_configs(bundle, "inference.json"),
        checkpoint="none",
        bundle_root=str(workdir),
    )
    return "tiny network_def"


def _tiny_network(bundle: Path, workdir: Path) -> tuple[torch.nn.Module, tuple[int, ...]]:
    from monai.bundle import ConfigParser
    from monai.bundle.scripts import _get_fake_spatial_shape, _get_net_io_info

    parser = ConfigParser()
    parser.read_config(tiny_configs(bundle, "inference.json"))
    parser.read_meta(str(bundle / "configs" / "metadata.json"))
    parser["bundle_root"], parser["checkpoint"] = str(workdir), "none"
    channels, spatial, *_ = _get_net_io_info(parser=parser)
    return parser.get_parsed_content("network_def"), (1, channels, *_get_fake_spatial_shape(spatial, n=4))


def check_torchscript(bundle: Path, workdir: Path) -> str:
    """`ckpt_export` (trace of the prompt-free forward) of the tiny network's weights, reload, and the
    same output as the eager network on a fixed input."""
    from monai.bundle import ckpt_export

    torch.manual_seed(0)
    network, shape = _tiny_network(bundle, workdir)
    ckpt, exported = workdir / "model.pt", workdir / "model.ts"
    torch.save({"model": network.state_dict()}, ckpt)
    ckpt_export(
        net_id="network_def",
        filepath=str(exported),
        ckpt_file=str(ckpt),
        key_in_ckpt="model",
        meta_file=str(bundle / "configs" / "metadata.json"),
        config_file=tiny_configs(bundle, "inference.json"),
        use_trace=True,
        input_shape=list(shape),
        bundle_root=str(workdir),
        checkpoint="none",
    )
    reloaded = torch.jit.load(str(exported), map_location="cpu")
    image = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = network.eval()(image), reloaded(image)
    if not torch.allclose(expected, got, atol=1e-4, rtol=1e-4):
        raise BundleCheckError(
            f"{bundle.name}: the TorchScript export differs from the eager network "
            f"(max |diff| {(expected - got).abs().max():.3g})"
        )
    return f"traced {tuple(shape)}, reload matches"


def checks(schema: Path = DEFAULT_SCHEMA) -> dict[str, Callable[[Path, Path], str]]:
    """Check name -> fn(bundle, workdir) -> detail (raises on failure)."""
    return {
        "files": lambda b, w: check_files(b),
        "config_keys": lambda b, w: check_keys(b),
        "version_in_changelog": lambda b, w: check_version(b),
        "metadata_schema": lambda b, w: check_schema(b, schema),
        "json_format": lambda b, w: check_json_format(b),
        "file_sizes": lambda b, w: check_file_sizes(b),
        "verify_net_in_out": check_net_in_out,
        "torchscript": check_torchscript,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="*", type=Path, help="bundle folders (default: all in bundles/)")
    parser.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA)
    parser.add_argument("--checks", nargs="+", choices=list(checks()), help="run only these checks (default: all)")
    args = parser.parse_args(argv)
    failed = 0
    for bundle in args.bundles or discover_bundles():
        for name, check in checks(args.schema).items():
            if args.checks and name not in args.checks:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    detail = check(bundle.resolve(), Path(tmp))
                    print(f"{bundle.name:16s} {name:22s} ok  {detail}")
                except Exception as exc:  # report every check, then fail
                    failed += 1
                    print(f"{bundle.name:16s} {name:22s} FAIL {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
