"""Interactive sessions of the MONAI Label app: state kept between one client's requests on one image.

A session holds what a bundle needs to apply corrections without starting over (a 3D
`VolumeSession`: the propagation state). It is named by MONAI Label's `session_id` (the image the
client uploaded with `create_session`) or by our own `interaction` id returned in the result JSON,
and belongs to the client that started it (`client_id`, as MONAI Label's client sends it).

`SessionStore(max_sessions, idle_seconds)` keeps at most `max_sessions` (the least recently used
one goes first) and drops a session idle for longer than `idle_seconds`. Sessions live in the server
process only: after a restart (or expiry, or eviction) a correction gets HTTP 410 "session expired:
send the full prompts"; a session of another client gets 403, one started on another image or
model version 409. The store is thread-safe; each session has its own lock, held while a request
changes it, so one session's requests apply one after the other.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from monaiseg.label.runtime import RequestError

EXPIRED = "session expired: send the full prompts"


@dataclass
class Session:
    """One client's interactive state on one image with one bundle (`state`: e.g. a `VolumeSession`)."""

    id: str
    client: str
    model: str
    image: str
    weights_version: int | None
    state: Any
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)


def new_session_id() -> str:
    return uuid.uuid4().hex


class SessionStore:
    """Bounded sessions keyed by (id, model); see the module docstring."""

    def __init__(self, max_sessions: int = 8, idle_seconds: float = 1800.0):
        if max_sessions < 1 or idle_seconds <= 0:
            raise ValueError(f"max_sessions must be >= 1 and idle_seconds > 0, got {max_sessions}, {idle_seconds}")
        self.max_sessions, self.idle_seconds = int(max_sessions), float(idle_seconds)
        self._sessions: OrderedDict[tuple[str, str], Session] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        for key in [k for k, s in self._sessions.items() if now - s.last_used > self.idle_seconds]:
            del self._sessions[key]

    def put(self, session: Session) -> Session:
        """Keep `session` (replacing one of the same id and model), evicting the least recently used
        beyond `max_sessions`; RequestError 403 when that id belongs to another client."""
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            key = (session.id, session.model)
            old = self._sessions.pop(key, None)
            if old is not None and old.client != session.client:
                self._sessions[key] = old
                raise RequestError(f"session {session.id} belongs to another client", 403)
            session.last_used = now
            self._sessions[key] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            return session

    def check_owner(self, session_id: str, model: str, client: str) -> None:
        """RequestError 403 when a live session of that id belongs to another client."""
        with self._lock:
            session = self._sessions.get((session_id, model))
            if session is not None and session.client != client:
                raise RequestError(f"session {session_id} belongs to another client", 403)

    def get(self, session_id: str, model: str, client: str, image: str, weights_version: int | None) -> Session:
        """The session to correct: RequestError 410 when unknown or expired, 403 when another client's,
        409 when it was started on another image or the bundle's weights changed since."""
        with self._lock:
            now = time.monotonic()
            self._expire(now)
            session = self._sessions.get((session_id, model))
            if session is None:
                raise RequestError(f"{EXPIRED} (no session {session_id} for {model} on this server)", 410)
            if session.client != client:
                raise RequestError(f"session {session_id} belongs to another client", 403)
            if session.image != image:
                raise RequestError(f"session {session_id} is on another image; send the full prompts", 409)
            if session.weights_version != weights_version:
                raise RequestError(f"{EXPIRED} (the model's weights changed since session {session_id} started)", 410)
            session.last_used = now
            self._sessions.move_to_end((session_id, model))
            return session

    def drop(self, session_id: str, model: str) -> None:
        with self._lock:
            self._sessions.pop((session_id, model), None)

    def __len__(self) -> int:
        with self._lock:
            self._expire(time.monotonic())
            return len(self._sessions)

    def summary(self) -> dict[str, Any]:
        with self._lock:
            self._expire(time.monotonic())
            return {
                "sessions": len(self._sessions),
                "max_sessions": self.max_sessions,
                "idle_seconds": self.idle_seconds,
            }
