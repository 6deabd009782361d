"""HTTP pieces both services share: the error body, health and readiness routes, server time."""

from __future__ import annotations

import hmac
import time

import redis
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas import __version__


def error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own 404 and 405 (no such route, wrong method) as ``{"error", "detail"}``."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return error(404, "not_found", f"no route {request.url.path[:200]!r}")
    if exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        return error(405, "method_not_allowed", f"{request.method[:16]} is not allowed here; use {allowed}",
                     dict(exc.headers or {}))
    return error(exc.status_code, "http_error", str(exc.detail), dict(exc.headers or {}))


EXCEPTION_HANDLERS = {404: http_error, 405: http_error}


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok", "service": request.app.state.service, "version": __version__})


async def readyz(request: Request) -> Response:
    try:
        await request.app.state.redis.ping()
    except (redis.RedisError, OSError) as exc:
        return JSONResponse(
            {"status": "unavailable", "detail": f"redis: {exc.__class__.__name__}",
             "version": __version__},
            status_code=503,
            headers={"Retry-After": "1"},
        )
    return JSONResponse({"status": "ready", "service": request.app.state.service, "version": __version__})


def metrics_denied(request: Request) -> Response | None:
    """The 401 for a ``/metrics`` scrape without ``METRICS_TOKEN`` (when one is set), else None."""
    token = request.app.state.settings.metrics_token
    if not token:
        return None
    given = request.headers.get("authorization", "")
    if hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return None
    return error(401, "unauthorized", "metrics need Authorization: Bearer $METRICS_TOKEN",
                 {"WWW-Authenticate": 'Bearer realm="metrics"'})


class ServerTime:
    """Stamp every response with ``X-Server-Time`` (epoch ms) so SDKs can correct their clocks."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def stamped(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-server-time", str(int(time.time() * 1000)).encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, stamped)
