"""HTTP pieces both services share: the error body, health and readiness routes, server time."""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable
from typing import Any

import redis
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from schemas import __version__
from infra.connection import acheck_ready


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
        await acheck_ready(request.app.state.redis)
    except (redis.RedisError, OSError, redis.exceptions.RedisClusterException) as exc:
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


class Timing:
    """Observe every request's latency in ``histogram`` (labels route, status class), the route
    being the matched route's template (never the raw path, so ``/kpis/{kpi}`` is one series
    whatever the name asked for; ``other`` when nothing matched)."""

    def __init__(self, app: ASGIApp, histogram: Histogram) -> None:
        self.app = app
        self.histogram = histogram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def noted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            route = getattr(scope.get("route"), "path", None) or "other"
            self.histogram.labels(route, f"{status // 100}xx").observe(time.perf_counter() - started)


def openapi_paths(
    routes: list[Any], operations: dict[tuple[str, str], dict[str, Any]],
    fallback_responses: dict[str, Any], secured: Callable[[str], bool] = lambda path: False,
) -> dict[str, dict[str, Any]]:
    """The ``paths`` of a service's OpenAPI document: each route's operation from ``operations``,
    or a summary taken from its endpoint's docstring; ``secured`` paths get the bearer scheme."""
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not isinstance(route, Route):
            continue
        for method in sorted(m.lower() for m in (route.methods or {"GET"}) if m != "HEAD"):
            op = operations.get((route.path, method))
            if op is None:
                doc = (route.endpoint.__doc__ or route.path).strip().splitlines()[0]
                op = {"summary": doc, "responses": fallback_responses}
            if secured(route.path):
                op = {**op, "security": [{"bearer": []}]}
            paths.setdefault(route.path, {})[method] = op
    return paths
