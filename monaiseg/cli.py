"""`monaiseg` command line. `monaiseg label serve --studies DIR|URL [--host 127.0.0.1] [--port 8000]
[--bundles PATH ...] [--overrides BUNDLE:FILE[,FILE] ...] [--random-init BUNDLE ...] [--cache-mib 1024]
[--max-sessions 8] [--session-idle-s 1800] [--allow-origin URL ...] [--users FILE | --auth-realm URI]
[--insecure-no-auth]` starts a MONAI Label server on the monaiseg app (`monaiseg.label.main`, secured
by `monaiseg.label.auth`) for the bundles found (default: the repository's bundles/). A `http(s)://`
URL as studies is a DICOMweb server (e.g. Orthanc's `http://127.0.0.1:8042/dicom-web`): images are
its image series, final labels go back as DICOM SEG. A non-loopback `--host` needs a login
(`--users`, `--auth-realm`, or MONAI Label's MONAI_LABEL_AUTH_ENABLE) or `--insecure-no-auth`.

`monaiseg label user add|remove|list [NAME] --users FILE [--role annotator|reviewer|admin]` manages
the local realm's users (`monaiseg.label.realm`; the password from a prompt, or stdin when piped).

`monaiseg new-bundle NAME [--bundles DIR]` copies bundles/_template to DIR/NAME (default bundles/NAME) with
its name filled in (`monaiseg.utils.bundle_contract.new_bundle`)."""

from __future__ import annotations

import argparse
import getpass
import ipaddress
import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

APP_SHIM = (
    '"""MONAI Label app folder made by `monaiseg label serve`: the app is monaiseg.label.main."""\n'
    "from monaiseg.label.main import MonaisegApp  # noqa: F401\n"
)


def is_url(studies: str) -> bool:
    return studies.startswith(("http://", "https://"))


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of an origin URL; ValueError for "*", a path, a query or no host."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise ValueError(f"--allow-origin {url!r}: give scheme://host[:port] (no path, no wildcard)")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def login_enabled(args: argparse.Namespace) -> bool:
    return bool(args.users or args.auth_realm) or os.environ.get("MONAI_LABEL_AUTH_ENABLE", "").lower() in ("1", "true")


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
    for spec in args.overrides or []:
        if ":" not in spec or spec.startswith(":"):
            raise ValueError(
                f"--overrides {spec!r}: aim it at a bundle, as BUNDLE:FILE[,FILE] (e.g. lite_medsam:tiny.json)"
            )
    if args.overrides:
        cmd += ["--conf", "overrides", ";".join(args.overrides)]
    if args.random_init:
        cmd += ["--conf", "random_init", ",".join(args.random_init)]
    names = {args.host, "127.0.0.1", "localhost"} if is_loopback(args.host) else set()
    own = [f"http://{f'[{h}]' if ':' in h else h}:{args.port}" for h in names]
    origins = sorted({origin_of(o) for o in [*own, *(args.allow_origin or [])]})
    cmd += ["--conf", "allow_origins", ",".join(origins)]
    cmd += ["--conf", "hosts", ",".join(urlsplit(o).netloc for o in own)]
    if args.users:
        cmd += ["--conf", "users", str(Path(args.users).resolve()), "--conf", "token_minutes", str(args.token_minutes)]
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
        metavar="BUNDLE:FILE[,FILE]",
        help="config files of a bundle merged after its inference.json, e.g. lite_medsam:label_test.json",
    )
    serve.add_argument(
        "--random-init", nargs="+", metavar="BUNDLE", help="bundles that may be served with random weights (tests)"
    )
    serve.add_argument(
        "--allow-origin",
        action="append",
        metavar="URL",
        help="a web origin (scheme://host[:port]) whose pages may call the server (repeatable; default: none "
        "but the server's own pages)",
    )
    serve.add_argument("--users", help="login against this local users file (monaiseg label user add ...)")
    serve.add_argument("--auth-realm", metavar="URI", help="login against this Keycloak realm (MONAI Label's own way)")
    serve.add_argument("--token-minutes", type=float, default=480, help="lifetime of a local-realm token")
    serve.add_argument(
        "--insecure-no-auth", action="store_true", help="listen on a non-loopback address without login (warned)"
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
        default=2**27,
        help="largest image an upload or infer may name, in elements read from its header (413 beyond; "
        "default 2**27 = 512x512x512: a 3D infer peaks at ~76 bytes per voxel, ~9.5 GiB, which with the server "
        "and its embedding cache stays within 12 GiB of a 24 GiB machine; scripts/measure_label_memory.py)",
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
    if args.group == "label" and args.action == "user":
        manage_users(args)
        return
    if args.group == "label" and args.action == "serve":
        if not is_loopback(args.host) and not login_enabled(args) and not args.insecure_no_auth:
            sys.exit(
                f"label serve: --host {args.host} is reachable from the network: log users in (--users FILE or "
                "--auth-realm URI), or pass --insecure-no-auth"
            )
        if args.insecure_no_auth and not login_enabled(args):
            print(
                f"WARNING: --insecure-no-auth: anyone who reaches {args.host}:{args.port} may read every image, "
                "overwrite every label and train",
                file=sys.stderr,
            )
        if args.users:
            os.environ["MONAI_LABEL_AUTH_ENABLE"] = "true"
            os.environ["MONAI_LABEL_AUTH_REALM_URI"] = "local"
        elif args.auth_realm:
            os.environ["MONAI_LABEL_AUTH_ENABLE"] = "true"
            os.environ["MONAI_LABEL_AUTH_REALM_URI"] = args.auth_realm
        if not is_url(args.studies):
            Path(args.studies).mkdir(parents=True, exist_ok=True)
        try:
            cmd = server_command(args)
        except ValueError as exc:
            sys.exit(f"label serve: {exc}")
        app_dir = Path(cmd[cmd.index("--app") + 1])
        os.environ.setdefault("MONAI_LABEL_SESSION_PATH", str(app_dir / "sessions"))  # not the user's home
        if is_url(args.studies):  # downloaded series in the app folder; new series listed within 10 s
            os.environ.setdefault("MONAI_LABEL_DICOMWEB_CACHE_PATH", str(app_dir / "dicomweb-cache"))
            os.environ.setdefault("MONAI_LABEL_DICOMWEB_CACHE_EXPIRY", "10")
        # blocks of 1 MiB and more (embeddings, activations) are mapped and unmapped when freed, so the
        # embeddings the cache evicts leave the server's memory instead of fragmenting glibc's heap
        os.environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(2**20))
        # OpenMP threads that finish early sleep instead of spinning: on a few busy cores a spinning
        # thread holds the core its peer needs, and a next click's decoder ran 5x slower (issue 27)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        sys.stdout.flush()
        os.execv(cmd[0], cmd)  # the server replaces this process: stopping its pid stops the server


def manage_users(args: argparse.Namespace) -> None:
    """`label user add|remove|list`: the local realm's users file."""
    from monaiseg.label.realm import LocalRealm, RealmError

    realm = LocalRealm(args.users)
    try:
        if args.op == "list":
            for name, role in realm.users().items():
                print(f"{name}\t{role}")
        elif args.op == "remove":
            realm.remove_user(args.name)
            print(f"{args.users}: {args.name} removed")
        else:
            if sys.stdin.isatty():
                password = getpass.getpass(f"password for {args.name}: ")
                if getpass.getpass("again: ") != password:
                    sys.exit("label user add: the passwords differ")
            else:
                password = sys.stdin.readline().rstrip("\n")
            new = realm.add_user(args.name, password, args.role)
            print(f"{args.users}: {args.name} {'added' if new else 'updated'} as {args.role}")
    except RealmError as exc:
        sys.exit(f"label user {args.op}: {exc}")


if __name__ == "__main__":
    main()
