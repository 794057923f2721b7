"""Login, roles and allowed origins on MONAI Label's FastAPI app (`secure(app, conf)`, done by
`monaiseg.label.asgi`, the app `monaiseg label serve` runs).

App conf (`--conf`, set by `label serve`): `allow_origins` (comma-separated exact origins), `hosts`
(the `Host` values a loopback server answers without login),
`users` (a `realm.LocalRealm` file: login against it), `token_minutes` (lifetime of its tokens).
Login is on when MONAI Label's `MONAI_LABEL_AUTH_ENABLE` is: against the local realm, or else
against the Keycloak realm at `MONAI_LABEL_AUTH_REALM_URI` as MONAI Label does it.

- Origins: a browser request with an `Origin` that is neither the server's own (`Host`) nor
  allowed gets 403; CORS headers go to allowed origins only (MONAI Label's own
  `MONAI_LABEL_CORS_ORIGINS` turns into "*" with credentials when empty, and into "URL/" with a
  trailing slash, which no browser origin matches).
- Login: every path but PUBLIC needs a valid bearer token (401). Roles are MONAI Label's `RBAC`
  dependencies on its routes, given the roles of POLICY (403 for a role that may not act).
  MONAI Label's `get_current_user` is overridden (FastAPI's `dependency_overrides`): its token
  check calls pyjwt without `algorithms`, which pyjwt 2 refuses for every token.
- A saved label records who saved it (`user` in its info); an image's label under a tag that
  another user saved is stored under `TAG-USER`, so neither overwrites the other.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import jwt
from fastapi import BackgroundTasks, Depends, FastAPI, File, Form, HTTPException, UploadFile
from fastapi.middleware import Middleware
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from monailabel.config import settings
from monailabel.endpoints import (
    activelearning,
    batch_infer,
    datastore,
    infer,
    info,
    login,
    logs,
    model,
    ohif,
    proxy,
    scoring,
    session,
    train,
    wsi_infer,
)
from monailabel.endpoints.user.auth import RBAC, User, get_current_user, get_public_key
from monailabel.interfaces.utils.app import app_instance
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse

from monaiseg.label.realm import ROLES, LocalRealm, label_roles

logger = logging.getLogger(__name__)

PUBLIC = {"/health", "/auth/", "/auth/token"}
ADMIN_PATHS = {"/reload"}  # MONAI Label routes without an RBAC dependency that only an admin may call
# the least role (monaiseg.label.realm.ROLES) that may call a route; any route not listed: admin
POLICY = {
    ("GET", "/info/"): "annotator",
    ("GET", "/auth/token/valid"): "annotator",
    ("POST", "/infer/{model}"): "annotator",
    ("PUT", "/session/"): "annotator",
    ("GET", "/session/{session_id}"): "annotator",
    ("DELETE", "/session/{session_id}"): "annotator",
    ("GET", "/datastore/image"): "annotator",
    ("HEAD", "/datastore/image"): "annotator",
    ("GET", "/datastore/image/info"): "annotator",
    ("PUT", "/datastore/label"): "annotator",
    ("GET", "/datastore/label"): "annotator",
    ("HEAD", "/datastore/label"): "annotator",
    ("GET", "/datastore/label/info"): "annotator",
    ("PUT", "/datastore/label/info"): "annotator",
    ("PUT", "/datastore/updatelabelinfo"): "annotator",
    ("GET", "/train/"): "annotator",
    ("GET", "/ohif/{path:path}"): "annotator",
    ("POST", "/activelearning/{strategy}"): "reviewer",
    ("GET", "/datastore/"): "reviewer",
    ("GET", "/datastore/dataset"): "reviewer",
    ("GET", "/scoring/"): "reviewer",
    ("GET", "/proxy/dicom/wado/{path:path}"): "reviewer",
    ("POST", "/proxy/dicom/wado/{path:path}"): "reviewer",
    ("GET", "/proxy/dicom/qido/{path:path}"): "reviewer",
    ("POST", "/proxy/dicom/qido/{path:path}"): "reviewer",
    ("GET", "/proxy/dicom/{path:path}"): "reviewer",
    ("POST", "/proxy/dicom/{path:path}"): "reviewer",
}
ROUTERS = [activelearning, batch_infer, datastore, infer, info, login, logs, model, ohif, proxy, scoring, session]
ROUTERS += [train, wsi_infer]
TAG_USER = re.compile(r"[^A-Za-z0-9_]")
bearer = OAuth2PasswordBearer(tokenUrl="/auth/token")


def least_role(method: str, path: str) -> str:
    return POLICY.get((method, path), "admin")


def allowed_roles(role: str) -> list[str]:
    """MONAI Label role names that may act where `role` is the least role needed."""
    return [label_roles(r)[ROLES.index(r)] for r in ROLES[ROLES.index(role) :]]


class Login:
    """Token check of the local realm (`users` file) or of MONAI Label's Keycloak realm."""

    def __init__(self, users: str | None):
        self.realm = LocalRealm(users) if users else None

    async def user(self, token: str) -> User:
        """The token's user with MONAI Label's role names; 401 when the token is not valid."""
        try:
            if self.realm is not None:
                name, held = await run_in_threadpool(self.realm.verify, token)
                return User(username=name, roles=held)
            key = await run_in_threadpool(get_public_key, settings.MONAI_LABEL_AUTH_REALM_URI)
            claims = jwt.decode(token, key, algorithms=["RS256"], options={"verify_aud": False, "require": ["exp"]})
        except jwt.InvalidTokenError as exc:
            raise HTTPException(401, detail=f"token not valid: {exc}", headers={"WWW-Authenticate": "Bearer"}) from None
        roles: Any = claims
        for key_part in settings.MONAI_LABEL_AUTH_TOKEN_ROLES.split("#"):
            roles = roles.get(key_part) if isinstance(roles, dict) else None
        return User(
            username=claims.get(settings.MONAI_LABEL_AUTH_TOKEN_USERNAME) or "",
            email=claims.get(settings.MONAI_LABEL_AUTH_TOKEN_EMAIL),
            name=claims.get(settings.MONAI_LABEL_AUTH_TOKEN_NAME),
            roles=list(roles or []),
        )


class Gate:
    """ASGI middleware: a foreign `Origin` gets 403; without `login`, a `Host` other than `hosts` (the
    loopback names the server is reached by) gets 403, so a page on a name that resolves to 127.0.0.1
    (DNS rebinding) cannot call it; with `login`, a path outside PUBLIC without a valid bearer token
    gets 401, and ADMIN_PATHS need the admin role (403)."""

    def __init__(self, app, origins: list[str], login: Login | None, hosts: Sequence[str] = ()):
        self.app, self.origins, self.login, self.hosts = app, set(origins), login, set(hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            refusal = await self.refusal(Request(scope))
            if refusal is not None:
                return await refusal(scope, receive, send)
        await self.app(scope, receive, send)

    async def refusal(self, request: Request) -> JSONResponse | None:
        host, origin = request.headers.get("host"), request.headers.get("origin")
        if self.login is None and self.hosts and host not in self.hosts:
            return JSONResponse(
                {"detail": f"host {host} is not this server's (a loopback name: {sorted(self.hosts)})"}, 403
            )
        if origin and origin not in self.origins and urlsplit(origin).netloc != host:
            return JSONResponse({"detail": f"origin {origin} is not allowed (--allow-origin)"}, 403)
        if self.login is None or request.url.path in PUBLIC:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return JSONResponse({"detail": "Not authenticated"}, 401, {"WWW-Authenticate": "Bearer"})
        try:
            user = await self.login.user(token)
        except HTTPException as exc:
            return JSONResponse({"detail": exc.detail}, exc.status_code, exc.headers)
        if request.url.path in ADMIN_PATHS and settings.MONAI_LABEL_AUTH_ROLE_ADMIN not in user.roles:
            return JSONResponse({"detail": f"{request.url.path} needs the admin role"}, 403)
        return None


def owned_tag(image: str, tag: str, user: str) -> str:
    """`tag`, or `TAG-USER` when the image already has a label under `tag` that another user saved."""
    store = app_instance().datastore()
    if tag not in store.get_labels_by_image_id(image):
        return tag
    saved_by = store.get_label_info(store.get_labels_by_image_id(image)[tag], tag).get("user")
    return tag if saved_by == user else f"{tag}-{TAG_USER.sub('_', user)}"


def secure(app: FastAPI, conf: dict) -> None:
    """Origins, health check and (when MONAI Label's auth is enabled) login and roles on MONAI
    Label's `app`, before it starts: its CORS middleware replaced, the Gate last of the middleware."""
    origins = [o for o in str(conf.get("allow_origins", "")).split(",") if o]
    if "*" in origins:
        raise ValueError("allow_origins: '*' would let any web page act with the user's credentials")
    login = Login(conf.get("users")) if settings.MONAI_LABEL_AUTH_ENABLE else None
    cors = Middleware(
        CORSMiddleware,
        allow_origins=origins,
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "DELETE", "HEAD"],
        allow_headers=["Authorization", "Content-Type"],
    )
    app.user_middleware = [cors if m.cls is CORSMiddleware else m for m in app.user_middleware]
    hosts = [h for h in str(conf.get("hosts", "")).split(",") if h]
    app.user_middleware.append(Middleware(Gate, origins=origins, login=login, hosts=hosts))
    routes = [APIRoute("/health", health, methods=["GET"], include_in_schema=False)]
    logger.info("allowed origins: %s (and the server's own)", origins or "none")
    if login is not None:
        app.dependency_overrides[get_current_user] = login_user(login)
        for router in ROUTERS:
            for route in router.router.routes:
                if not isinstance(route, APIRoute):
                    continue
                for dep in route.dependant.dependencies:
                    if isinstance(dep.call, RBAC):
                        dep.call.roles = allowed_roles(least_role(next(iter(route.methods or ["GET"])), route.path))
        routes.append(APIRoute("/datastore/label", save_label, methods=["PUT"], dependency_overrides_provider=app))
        if login.realm is not None:
            minutes = float(conf.get("token_minutes", 60))
            routes.append(APIRoute("/auth/token", local_token(login.realm, minutes), methods=["POST"]))
        logger.info("login: %s realm", f"local ({login.realm.path})" if login.realm else "Keycloak")
    app.router.routes[:0] = routes  # before MONAI Label's routes of the same paths


async def health() -> dict:
    return {"status": "ok"}


def login_user(login: Login):
    async def current_user(token: str = Depends(bearer)) -> User:
        return await login.user(token)

    return current_user


def local_token(realm: LocalRealm, minutes: float):
    def token(form: OAuth2PasswordRequestForm = Depends()) -> dict:  # noqa: B008
        """MONAI Label's /auth/token answered by the local realm (MONAILabelClient.auth_token)."""
        access = realm.login(form.username, form.password, minutes)
        if access is None:
            raise HTTPException(401, detail="wrong user name or password", headers={"WWW-Authenticate": "Bearer"})
        return {"access_token": access, "token_type": "bearer"}

    return token


async def save_label(
    background_tasks: BackgroundTasks,
    image: str,
    params: str = Form("{}"),
    tag: str = "final",
    label: UploadFile = File(...),  # noqa: B008
    user: User = Depends(RBAC(allowed_roles("annotator"))),  # noqa: B008
):
    """MONAI Label's save label, with the user in the label's info and under an owned tag."""
    try:
        info = json.loads(params or "{}")
        if not isinstance(info, dict):
            raise ValueError("not an object")
    except ValueError as exc:
        raise HTTPException(400, detail=f"params: not a JSON object ({exc})") from None
    owned = await run_in_threadpool(owned_tag, image, tag or "final", user.username)
    info["user"] = user.username
    return await run_in_threadpool(
        datastore.save_label, background_tasks, image, json.dumps(info), owned, label, user.username
    )
