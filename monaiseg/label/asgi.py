"""The ASGI app `monaiseg label serve` runs (uvicorn's `monaiseg.label.asgi:app`): MONAI Label's
FastAPI app with one clean error per failed request (`CleanErrors`).

Every response of status 400 or more is logged as one line, `METHOD /path -> STATUS: reason`;
an exception no route turned into a response becomes one JSON `{"detail": reason}` (404 for
MONAI Label's image / label not found, 400 for its invalid input, else 500) with a one-line
reason and that one log line: no traceback reaches uvicorn or Starlette's error middleware.
"""

from __future__ import annotations

import json
import logging
import traceback

from fastapi.middleware import Middleware
from monailabel.app import app
from monailabel.config import settings
from monailabel.interfaces.exception import (
    ImageNotFoundException,
    LabelNotFoundException,
    MONAILabelError,
    MONAILabelException,
)
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monaiseg.label.auth import secure

logger = logging.getLogger("monaiseg.label.requests")


def one_line(text: str, limit: int = 500) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def classify(exc: BaseException) -> tuple[int, str]:
    """(status, one-line reason) of an exception no route handled."""
    if isinstance(exc, (ImageNotFoundException, LabelNotFoundException)):
        return 404, one_line(exc.msg)
    if isinstance(exc, MONAILabelException):
        return (400 if exc.error == MONAILabelError.INVALID_INPUT else 500), one_line(exc.msg)
    where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
    at = f" (at {where.filename.rsplit('/', 1)[-1]}:{where.lineno} in {where.name})" if where else ""
    return 500, one_line(f"{type(exc).__name__}: {exc}{at}")


class CleanErrors:
    """ASGI middleware: one line logged per failed request, unhandled exceptions as one JSON error."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []
        body = bytearray()

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body" and status and status[0] >= 400 and len(body) < 4096:
                body.extend(message.get("body", b""))
            await send(message)

        request = f"{scope.get('method', '')} {scope.get('path', '')}"
        try:
            await self.app(scope, receive, watch)
        except Exception as exc:
            code, reason = classify(exc)
            if not status:
                await JSONResponse({"detail": reason}, code)(scope, receive, send)
            logger.error("%s -> %d: %s", request, code, reason)
            return
        if status and status[0] >= 400:
            try:
                reason = json.loads(bytes(body)).get("detail", "")
            except (ValueError, AttributeError):
                reason = bytes(body).decode(errors="replace")
            logger.warning("%s -> %d: %s", request, status[0], one_line(reason))


app.user_middleware.append(Middleware(CleanErrors))  # inside CORS: browsers see the error's headers too
secure(app, settings.MONAI_LABEL_APP_CONF)  # origins, login and roles (monaiseg.label.auth), CORS outermost
