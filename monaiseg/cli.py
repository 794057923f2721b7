"""`monaiseg` command line. `monaiseg label serve --studies DIR|URL [--host 127.0.0.1] [--port 8000]
[--bundles PATH ...] [--overrides FILE ...] [--cache-mib 1024] [--max-sessions 8] [--session-idle-s 1800]`
starts a MONAI Label server on the monaiseg app (`monaiseg.label.main`) for the bundles found
(default: the repository's bundles/). A `http(s)://` URL as studies is a DICOMweb server (e.g.
Orthanc's `http://127.0.0.1:8042/dicom-web`): images are its image series, final labels go back as
DICOM SEG.

`monaiseg new-bundle NAME [--bundles DIR]` copies bundles/_template to DIR/NAME (default bundles/NAME) with
its name filled in (`monaiseg.utils.bundle_contract.new_bundle`)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

APP_SHIM = (
    '"""MONAI Label app folder made by `monaiseg label serve`: the app is monaiseg.label.main."""\n'
    "from monaiseg.label.main import MonaisegApp  # noqa: F401\n"
)


def is_url(studies: str) -> bool:
    return studies.startswith(("http://", "https://"))


def server_command(args: argparse.Namespace) -> list[str]:
    """The `python -m monailabel.main start_server ...` command for `label serve` arguments; writes
    the app folder (a main.py importing `MonaisegApp`; MONAI Label also keeps its logs there, and
    with a DICOMweb server its cache of downloaded series)."""
    studies = args.studies.rstrip("/") if is_url(args.studies) else str(Path(args.studies).resolve())
    default_app = Path.cwd() if is_url(studies) else Path(studies)
    app_dir = Path(args.app_dir).resolve() if args.app_dir else default_app / ".monaiseg-label-app"
    app_dir.mkdir(parents=True, exist_ok=True)
    main = app_dir / "main.py"
    if not main.is_file() or main.read_text() != APP_SHIM:
        main.write_text(APP_SHIM)
    cmd = [
        sys.executable,
        "-m",
        "monailabel.main",
        "start_server",
        "--app",
        str(app_dir),
        "--studies",
        studies,
        "--host",
        args.host,
        "-p",
        str(args.port),
        "--uvicorn_app",
        "monaiseg.label.asgi:app",
    ]
    if args.bundles:
        cmd += ["--conf", "bundles", ",".join(str(Path(b).resolve()) for b in args.bundles)]
    if args.overrides:
        cmd += ["--conf", "overrides", ",".join(args.overrides)]
    cmd += ["--conf", "cache_mib", str(args.cache_mib), "--conf", "max_sessions", str(args.max_sessions)]
    cmd += ["--conf", "session_idle_s", str(args.session_idle_s)]
    cmd += ["--conf", "max_voxels", str(args.max_voxels)]
    return cmd


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="monaiseg", description=__doc__.split("\n")[0])
    groups = p.add_subparsers(dest="group", required=True)
    label = groups.add_parser("label", help="MONAI Label server").add_subparsers(dest="action", required=True)
    serve = label.add_parser("serve", help="serve the bundles to 3D Slicer / OHIF over MONAI Label")
    serve.add_argument(
        "--studies",
        required=True,
        help="datastore folder (images, labels; created if missing) or a DICOMweb URL (e.g. Orthanc's /dicom-web)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--bundles", nargs="+", help="bundle folders or folders of bundles (default: bundles/)")
    serve.add_argument(
        "--overrides",
        nargs="+",
        help="config files merged after each bundle's inference.json where the bundle has them, e.g. tiny.json",
    )
    serve.add_argument(
        "--app-dir",
        help="MONAI Label app folder (default: STUDIES/.monaiseg-label-app, ./.monaiseg-label-app for a URL)",
    )
    serve.add_argument(
        "--cache-mib", type=float, default=1024, help="bound of the in-memory image-embedding cache (0: off)"
    )
    serve.add_argument("--max-sessions", type=int, default=8, help="interactive sessions kept (least recent first out)")
    serve.add_argument("--session-idle-s", type=float, default=1800, help="idle seconds after which a session expires")
    serve.add_argument(
        "--max-voxels",
        type=int,
        default=2**28,
        help="largest image an upload or infer may name, in elements read from its header (413 beyond; "
        "default 2**28 = 512x512x1024: a whole-body CT, about 6 GiB at the pipelines' ~24 bytes per voxel, "
        "so two such requests and the models fit a 24 GiB machine)",
    )
    user = label.add_parser("user", help="users of the local login realm").add_subparsers(dest="op", required=True)
    for op in ("add", "remove", "list"):
        cmd = user.add_parser(op, help=f"{op} a user" if op != "list" else "list users and roles")
        if op != "list":
            cmd.add_argument("name")
        cmd.add_argument("--users", required=True, help="the users file (created by the first add)")
        if op == "add":
            cmd.add_argument("--role", required=True, choices=("annotator", "reviewer", "admin"))
    new = groups.add_parser("new-bundle", help="a new bundle folder copied from bundles/_template")
    new.add_argument("name", help="the bundle's folder name (lower-case snake case)")
    new.add_argument("--bundles", default="bundles", help="the folder of bundles to create it in (default: bundles)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.group == "new-bundle":
        from monaiseg.utils.bundle_contract import new_bundle

        print(f"{new_bundle(args.name, args.bundles)}: made from bundles/_template (CONTRIBUTING.md, Add a bundle)")
        return
    if args.group == "label" and args.action == "serve":
        if not is_url(args.studies):
            Path(args.studies).mkdir(parents=True, exist_ok=True)
        cmd = server_command(args)
        app_dir = Path(cmd[cmd.index("--app") + 1])
        os.environ.setdefault("MONAI_LABEL_SESSION_PATH", str(app_dir / "sessions"))  # not the user's home
        if is_url(args.studies):  # downloaded series in the app folder; new series listed within 10 s
            os.environ.setdefault("MONAI_LABEL_DICOMWEB_CACHE_PATH", str(app_dir / "dicomweb-cache"))
            os.environ.setdefault("MONAI_LABEL_DICOMWEB_CACHE_EXPIRY", "10")
        # blocks of 1 MiB and more (embeddings, activations) are mapped and unmapped when freed, so the
        # embeddings the cache evicts leave the server's memory instead of fragmenting glibc's heap
        os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(2**20))
        sys.stdout.flush()
        os.execv(cmd[0], cmd)  # the server replaces this process: stopping its pid stops the server


if __name__ == "__main__":
    main()
