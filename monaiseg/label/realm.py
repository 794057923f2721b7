"""A local login realm for sites without Keycloak: users, their bcrypt password hashes and roles in
one JSON file the admin manages (`monaiseg label user add NAME --role ROLE`), and the signed,
expiring tokens (pyjwt, HS256 with the file's random secret) that the server issues from it.

Tokens carry Keycloak's claims (`preferred_username`, `realm_access.roles`, MONAI Label's role names),
so MONAI Label's RBAC treats a local user and a Keycloak user alike. A role includes the ones before
it in ROLES (an admin may do what a reviewer may). The file is read again when it changes: an added,
removed or re-roled user counts at once, without a restart.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
import threading
import time
from pathlib import Path

import bcrypt
import jwt
from monailabel.config import settings

ROLES = ("annotator", "reviewer", "admin")
USER_NAME = re.compile(r"[a-z0-9][a-z0-9_]{0,31}")
ALGORITHM = "HS256"
ISSUER = "monaiseg-local-realm"
MAX_PASSWORD_BYTES = 72  # bcrypt's limit
MIN_PASSWORD_CHARS = 8


def label_roles(role: str) -> list[str]:
    """MONAI Label's role names a monaiseg `role` holds (itself and those below it, plus the user role)."""
    names = {
        "annotator": settings.MONAI_LABEL_AUTH_ROLE_ANNOTATOR,
        "reviewer": settings.MONAI_LABEL_AUTH_ROLE_REVIEWER,
        "admin": settings.MONAI_LABEL_AUTH_ROLE_ADMIN,
    }
    return [names[r] for r in ROLES[: ROLES.index(role) + 1]] + [settings.MONAI_LABEL_AUTH_ROLE_USER]


class RealmError(ValueError):
    """A users file, user name, role or password that cannot be used (the message names it)."""


class LocalRealm:
    """The users file at `path`: {"secret": hex, "users": {name: {"role": ROLE, "hash": bcrypt}}}."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._cached: tuple[tuple[int, int], dict] | None = None

    def read(self) -> dict:
        """The file's content (read again when its mtime or size changed); RealmError when unreadable."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            raise RealmError(
                f"{self.path}: no users file (add a user: monaiseg label user add NAME --role ROLE)"
            ) from None
        with self._lock:
            if self._cached is None or self._cached[0] != (st.st_mtime_ns, st.st_size):
                try:
                    data = json.loads(self.path.read_text())
                    if not isinstance(data.get("users"), dict) or len(bytes.fromhex(data["secret"])) < 32:
                        raise ValueError("needs a 'users' table and a 32-byte 'secret'")
                except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                    raise RealmError(f"{self.path}: not a users file ({exc})") from None
                self._cached = ((st.st_mtime_ns, st.st_size), data)
            return self._cached[1]

    def _write(self, data: dict) -> None:
        """Replace the file atomically, readable by its owner only."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".users-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=2)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def add_user(self, name: str, password: str, role: str) -> bool:
        """Add `name` (or replace its password and role); True when it is new."""
        if not USER_NAME.fullmatch(name):
            raise RealmError(f"user name {name!r}: 1-32 of a-z, 0-9, _ (starting with a letter or digit)")
        if role not in ROLES:
            raise RealmError(f"role {role!r} is not one of {ROLES}")
        if len(password) < MIN_PASSWORD_CHARS or len(password.encode()) > MAX_PASSWORD_BYTES:
            raise RealmError(f"password: {MIN_PASSWORD_CHARS} characters to {MAX_PASSWORD_BYTES} bytes")
        data: dict = self.read() if self.path.exists() else {"secret": secrets.token_hex(32), "users": {}}
        new = name not in data["users"]
        data["users"][name] = {"role": role, "hash": bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()}
        self._write(data)
        return new

    def remove_user(self, name: str) -> None:
        data = self.read()
        if data["users"].pop(name, None) is None:
            raise RealmError(f"{self.path}: no user {name!r}")
        self._write(data)

    def users(self) -> dict[str, str]:
        """{name: role}."""
        return {name: user["role"] for name, user in sorted(self.read()["users"].items())}

    def login(self, name: str, password: str, minutes: float) -> str | None:
        """A signed token valid for `minutes` when `password` is `name`'s, else None."""
        user = self.read()["users"].get(name)
        stored = user["hash"].encode() if user else bcrypt.hashpw(b"-", bcrypt.gensalt())  # same work either way
        if not bcrypt.checkpw(password.encode()[:MAX_PASSWORD_BYTES], stored) or user is None:
            return None
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "sub": name,
            settings.MONAI_LABEL_AUTH_TOKEN_USERNAME: name,
            "realm_access": {"roles": label_roles(user["role"])},
            "iat": now,
            "exp": now + int(minutes * 60),
        }
        return jwt.encode(claims, bytes.fromhex(self.read()["secret"]), algorithm=ALGORITHM)

    def verify(self, token: str) -> tuple[str, list[str]]:
        """(user name, MONAI Label roles) of a valid token of a user still in the file (roles as the
        file says now); jwt.InvalidTokenError otherwise."""
        data = self.read()
        claims = jwt.decode(
            token, bytes.fromhex(data["secret"]), algorithms=[ALGORITHM], issuer=ISSUER, options={"require": ["exp"]}
        )
        user = data["users"].get(claims.get("sub"))
        if user is None:
            raise jwt.InvalidTokenError(f"user {claims.get('sub')!r} is no longer in the realm")
        return claims["sub"], label_roles(user["role"])
