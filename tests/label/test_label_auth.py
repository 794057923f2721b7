"""Login with roles and the origin allow-list (issue 26, items 3 and 4), against a server with a local
realm, through MONAI Label's own client and raw HTTP.

The `case_*` functions take a running `LabelServer` started by `auth_server` (scripts/check_label_server.py
runs them too)."""

from __future__ import annotations

import io
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import jwt
import numpy as np
import pytest
import requests
from conftest import REPO
from monailabel.client import MONAILabelClient
from monailabel.client.client import MONAILabelClientException
from PIL import Image

from monaiseg.label.realm import LocalRealm, RealmError
from monaiseg.label.server import LabelServer, tiny_copy, tiny_overrides

USERS = {"alice": "annotator", "bob": "annotator", "rita": "reviewer", "adam": "admin"}
ALLOWED = "http://ohif.example:3000"


@contextmanager
def auth_server(root: Path):
    """A server on a tiny unet_cells with login against a local realm (`server.passwords`), one image
    "rgb" in its studies, and `ALLOWED` as an extra origin."""
    tiny_copy(REPO / "bundles" / "unet_cells", root / "bundles" / "unet_cells")
    realm = LocalRealm(root / "users.json")
    passwords = {name: f"pw-{name}-0123" for name in USERS}
    for name, role in USERS.items():
        realm.add_user(name, passwords[name], role)
    studies = root / "studies"
    studies.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((48, 40, 3)) * 255).astype(np.uint8)).save(studies / "rgb.png")
    options = ["--users", str(realm.path), "--allow-origin", ALLOWED]
    with LabelServer(studies, [root / "bundles"], tiny_overrides(root / "bundles"), options=options) as srv:
        srv.realm, srv.passwords, srv.root = realm, passwords, root
        yield srv


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with auth_server(tmp_path_factory.mktemp("auth")) as srv:
        yield srv


def token(server, name: str) -> dict:
    """`name`'s token from /auth/token (one login per user and server: a bcrypt check costs ~0.25 s)."""
    tokens = server.__dict__.setdefault("tokens", {})
    if name not in tokens:
        tokens[name] = MONAILabelClient(server.url).auth_token(name, server.passwords[name])
    return tokens[name]


def bearer(server, name: str) -> dict:
    t = token(server, name)
    return {"Authorization": f"{t['token_type']} {t['access_token']}"}


def label_png(seed: int) -> bytes:
    mask = (np.random.default_rng(seed).random((48, 40)) > 0.5).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(mask).save(buffer, format="PNG")
    return buffer.getvalue()


def case_login_through_monailabel_client(server) -> None:
    """The Slicer plugin's calls: auth_enabled, auth_token(user, password), update_auth, info."""
    client = MONAILabelClient(server.url)
    assert client.auth_enabled()
    with pytest.raises(MONAILabelClientException) as err:
        client.info()
    assert err.value.status_code == 401
    with pytest.raises(MONAILabelClientException) as err:
        client.auth_token("alice", "wrong password")
    assert err.value.status_code == 401
    client.update_auth(client.auth_token("alice", server.passwords["alice"]))
    assert client.auth_valid_token() and "unet_cells" in client.info()["models"]


def case_every_endpoint_but_health_needs_a_token(server) -> None:
    assert requests.get(f"{server.url}/health", timeout=30).json() == {"status": "ok"}
    for method, path in [
        ("GET", "/info/"),
        ("GET", "/datastore/?output=all"),
        ("POST", "/infer/unet_cells?image=rgb"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("POST", "/reload"),
        ("GET", "/static/favicon.ico"),
        ("GET", "/"),
    ]:
        assert requests.request(method, server.url + path, timeout=30).status_code == 401, path
        bad = {"Authorization": "Bearer not.a.token"}
        assert requests.request(method, server.url + path, headers=bad, timeout=30).status_code == 401, path


def next_sample(server, headers: dict) -> requests.Response:
    """POST /activelearning/random, a second after the last pick at least: MONAI Label 0.8.5's random
    strategy weighs images by the whole seconds since they were picked and fails when all weigh 0."""
    time.sleep(max(0.0, server.__dict__.get("picked", 0) + 1.05 - time.time()))
    r = requests.post(f"{server.url}/activelearning/random", headers=headers)
    server.picked = time.time()
    return r


def case_roles(server) -> None:
    """annotator: infer, save label; reviewer: also next sample and listing; admin: also train, delete, upload."""
    png = label_png(1)
    calls = {
        "infer": lambda h: requests.post(f"{server.url}/infer/unet_cells", params={"image": "rgb"}, headers=h),
        "save label": lambda h: requests.put(
            f"{server.url}/datastore/label", params={"image": "rgb", "tag": "roles"}, files={"label": png}, headers=h
        ),
        "next sample": lambda h: next_sample(server, h),
        "listing": lambda h: requests.get(f"{server.url}/datastore/", headers=h),
        "stop training": lambda h: requests.delete(f"{server.url}/train/", headers=h),
        "upload": lambda h: requests.put(
            f"{server.url}/datastore/image", params={"image": "up"}, files={"file": ("up.png", png)}, headers=h
        ),
        "delete": lambda h: requests.delete(f"{server.url}/datastore/image", params={"id": "up"}, headers=h),
        "reload": lambda h: requests.post(f"{server.url}/reload", headers=h),
    }
    allowed = {
        "alice": {"infer", "save label"},
        "rita": {"infer", "save label", "next sample", "listing"},
        "adam": set(calls),
    }
    for name, may in allowed.items():
        headers = bearer(server, name)
        for action, call in calls.items():
            r = call(headers)
            assert r.status_code == (200 if action in may else 403), (name, action, r.status_code, r.text[:300])
        if name != "adam":  # an admin's would start a training
            assert requests.post(f"{server.url}/train/unet_cells", headers=headers).status_code == 403


def case_labels_of_two_annotators_are_both_kept(server) -> None:
    first, second = label_png(2), label_png(3)
    client = MONAILabelClient(server.url)  # alice saves as 3D Slicer does
    client.update_auth(token(server, "alice"))
    (server.root / "first.png").write_bytes(first)
    client.save_label("rgb", str(server.root / "first.png"), tag="final", params={"note": "alice"})
    r = requests.put(
        f"{server.url}/datastore/label",
        params={"image": "rgb", "tag": "final"},
        files={"label": ("label.png", second)},
        data={"params": json.dumps({"note": "bob"})},
        headers=bearer(server, "bob"),
    )
    assert r.status_code == 200, r.text
    labels = requests.get(f"{server.url}/datastore/?output=all", headers=bearer(server, "rita")).json()
    tags = labels["objects"]["rgb"]["labels"]
    assert {"final", "final-bob"} <= set(tags), tags
    assert tags["final"]["info"]["user"] == "alice" and tags["final-bob"]["info"]["user"] == "bob"
    assert tags["final-bob"]["info"]["note"] == "bob"
    for tag, png in (("final", first), ("final-bob", second)):
        r = requests.get(
            f"{server.url}/datastore/label", params={"label": "rgb", "tag": tag}, headers=bearer(server, "alice")
        )
        assert r.status_code == 200 and np.array_equal(
            np.asarray(Image.open(io.BytesIO(r.content))), np.asarray(Image.open(io.BytesIO(png)))
        ), tag


def case_expired_forged_and_removed_users_tokens_get_401(server) -> None:
    data = json.loads(server.realm.path.read_text())
    now = int(time.time())
    claims = {"iss": "monaiseg-local-realm", "sub": "adam", "iat": now - 120, "exp": now - 60}
    expired = jwt.encode(claims, bytes.fromhex(data["secret"]), algorithm="HS256")
    forged = jwt.encode({**claims, "exp": now + 600}, b"x" * 32, algorithm="HS256")
    unsigned = jwt.encode({**claims, "exp": now + 600}, None, algorithm="none")
    for t in (expired, forged, unsigned):
        r = requests.get(f"{server.url}/info/", headers={"Authorization": f"Bearer {t}"}, timeout=30)
        assert r.status_code == 401, r.text
    server.realm.add_user("temp", "pw-temp-0123", "admin")
    server.passwords["temp"] = "pw-temp-0123"
    headers = bearer(server, "temp")  # a user added while the server runs can log in
    assert requests.get(f"{server.url}/info/", headers=headers, timeout=30).status_code == 200
    server.realm.remove_user("temp")
    assert requests.get(f"{server.url}/info/", headers=headers, timeout=30).status_code == 401


def case_origins(server) -> None:
    """A foreign preflight gets no allow-origin header (and a foreign request 403); an allowed one gets
    exactly its origin, never "*"."""
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    evil = requests.options(
        f"{server.url}/infer/unet_cells", headers={"Origin": "http://evil.example", **preflight}, timeout=30
    )
    assert "access-control-allow-origin" not in evil.headers, evil.headers
    r = requests.get(f"{server.url}/info/", headers={"Origin": "http://evil.example", **bearer(server, "alice")})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
    ok = requests.options(f"{server.url}/infer/unet_cells", headers={"Origin": ALLOWED, **preflight}, timeout=30)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ALLOWED
    assert ok.headers["access-control-allow-credentials"] == "true"
    for origin in (ALLOWED, server.url):  # the allowed one, and the server's own page (OHIF)
        r = requests.get(f"{server.url}/info/", headers={"Origin": origin, **bearer(server, "alice")}, timeout=30)
        assert r.status_code == 200 and r.headers.get("access-control-allow-origin") in (origin, None)
        assert r.headers.get("access-control-allow-origin") != "*"


CASES = [
    case_login_through_monailabel_client,
    case_every_endpoint_but_health_needs_a_token,
    case_roles,
    case_labels_of_two_annotators_are_both_kept,
    case_expired_forged_and_removed_users_tokens_get_401,
    case_origins,
]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__[5:])
def test_auth_server(server, case):
    case(server)


def test_keycloak_tokens_are_checked_with_the_realm_key(monkeypatch):
    """A site's Keycloak realm: RS256 tokens checked against the realm's public key, roles from realm_access."""
    import asyncio

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from fastapi import HTTPException

    from monaiseg.label import auth

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setattr(auth, "get_public_key", lambda uri: public.decode())
    claims = {"preferred_username": "kc", "realm_access": {"roles": ["monailabel-reviewer"]}, "exp": time.time() + 60}
    user = asyncio.run(auth.Login(None).user(jwt.encode(claims, key, algorithm="RS256")))
    assert user.username == "kc" and user.roles == ["monailabel-reviewer"]
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(HTTPException) as err:
        asyncio.run(auth.Login(None).user(jwt.encode(claims, other, algorithm="RS256")))
    assert err.value.status_code == 401


def test_role_policy():
    from monaiseg.label.auth import allowed_roles, least_role

    assert least_role("POST", "/infer/{model}") == "annotator"
    assert least_role("GET", "/datastore/") == "reviewer"
    assert least_role("POST", "/train/{model}") == least_role("PUT", "/nothing/listed") == "admin"
    assert allowed_roles("reviewer") == ["monailabel-reviewer", "monailabel-admin"]


def test_realm_file(tmp_path):
    realm = LocalRealm(tmp_path / "users.json")
    assert realm.add_user("carl", "pw-carl-0123", "reviewer") and not realm.add_user("carl", "pw-carl-4567", "admin")
    assert realm.users() == {"carl": "admin"} and (realm.path.stat().st_mode & 0o777) == 0o600
    assert realm.login("carl", "pw-carl-0123", 5) is None  # the old password no longer works
    name, roles = realm.verify(realm.login("carl", "pw-carl-4567", 5))
    assert name == "carl" and "monailabel-admin" in roles and "monailabel-annotator" in roles
    assert "$2b$" in realm.path.read_text() and "pw-carl" not in realm.path.read_text()
    for args, words in [
        (("../x", "pw-long-enough", "admin"), "user name"),
        (("dan", "pw-long-enough", "root"), "role"),
        (("dan", "short", "admin"), "password"),
        (("dan", "x" * 73, "admin"), "password"),
    ]:
        with pytest.raises(RealmError, match=words):
            realm.add_user(*args)


def test_user_cli_and_non_loopback_refusal(tmp_path, monkeypatch, capsys):
    from monaiseg import cli

    users = str(tmp_path / "users.json")
    monkeypatch.setattr(sys, "stdin", io.StringIO("pw-erin-0123\n"))
    cli.main(["label", "user", "add", "erin", "--role", "annotator", "--users", users])
    cli.main(["label", "user", "list", "--users", users])
    assert capsys.readouterr().out.splitlines()[-1] == "erin\tannotator"
    studies = str(tmp_path / "s")
    with pytest.raises(SystemExit, match="reachable from the network"):
        cli.main(["label", "serve", "--studies", studies, "--host", "0.0.0.0"])
    with pytest.raises(SystemExit, match="wildcard"):
        cli.main(["label", "serve", "--studies", studies, "--allow-origin", "*"])
    started = []
    monkeypatch.setattr(cli.os, "execv", lambda exe, cmd: started.append(cmd))
    monkeypatch.setattr(cli.os, "environ", {k: v for k, v in cli.os.environ.items() if k != "MONAI_LABEL_AUTH_ENABLE"})
    cli.main(["label", "serve", "--studies", studies, "--host", "0.0.0.0", "--insecure-no-auth"])
    assert "WARNING: --insecure-no-auth" in capsys.readouterr().err and started
    conf = dict(zip(started[0][1::1], started[0][2::1], strict=False))
    assert conf["allow_origins"] == "" and "users" not in conf


def test_gate_origins_hosts_and_tokens(tmp_path):
    """The middleware alone: foreign origins and (without login) foreign Host names refused, tokens checked."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from monaiseg.label.auth import Gate, Login

    inner = Starlette(routes=[Route("/x", lambda r: PlainTextResponse("ok"), methods=["GET", "POST"])])
    own = "http://127.0.0.1:8000"
    gate = TestClient(Gate(inner, [own, ALLOWED], None, ["127.0.0.1:8000"]), base_url=own)
    assert gate.get("/x").status_code == gate.get("/x", headers={"Origin": ALLOWED}).status_code == 200
    assert gate.post("/x", headers={"Origin": "http://evil.example"}).status_code == 403
    rebound = {"Host": "evil.example:8000", "Origin": "http://evil.example:8000"}  # DNS rebinding to 127.0.0.1
    assert gate.post("/x", headers=rebound).status_code == 403
    realm = LocalRealm(tmp_path / "users.json")
    realm.add_user("ann", "pw-ann-0123", "annotator")
    proxied = TestClient(Gate(inner, [], Login(str(realm.path))), base_url="https://label.example.org")
    headers = {"Authorization": f"Bearer {realm.login('ann', 'pw-ann-0123', 5)}"}
    assert proxied.get("/x").status_code == 401 and proxied.get("/x", headers=headers).status_code == 200
    same = {**headers, "Origin": "https://label.example.org"}  # its own page behind a TLS proxy
    assert proxied.post("/x", headers=same).status_code == 200
    assert proxied.post("/reload", headers=headers).status_code == 403
    assert proxied.get("/health").status_code == 404  # public: passed to the app (which has none here)
