"""Bearer-token roles and per-token rate limits, as one decorator on every protected route.

``staff`` reads KPIs and reports; ``admin`` may also export raw events. A token's rate-limit
counter is keyed by a digest of the token, so no bearer token is ever written to Redis.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Awaitable, Callable

import redis
from starlette.requests import Request
from starlette.responses import Response

from kpi_api import metrics, overrides
from kpi_api.errors import HTTPError
from infra import tokens
from schemas import keyspace
from infra.service import error

logger = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]
READ = ("staff", "admin")
ADMIN = ("admin",)
WINDOW_S = 60
DROPPED = (redis.ConnectionError, redis.TimeoutError, OSError)
DROPPED_RETRIES = 1


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:32]


def authenticate(request: Request, roles: tuple[str, ...]) -> tuple[str, dict[str, object]]:
    token = tokens.bearer(request.headers.get("authorization"))
    if token is None:
        raise HTTPError(401, "unauthorized", "bearer token required", {"WWW-Authenticate": "Bearer"})
    try:
        settings = request.app.state.settings
        claims = tokens.verify(settings.jwt_secret_key, token, roles, max_age_s=settings.jwt_max_age_seconds)
    except tokens.TokenError as exc:
        code = "unauthorized" if exc.status == 401 else "forbidden"
        raise HTTPError(exc.status, code, exc.detail) from None
    return token, claims


async def rate_limit(request: Request, token: str) -> None:
    """Fixed one-minute window per token: INCR, expire with the window, 429 past the limit."""
    limit = request.app.state.settings.kpi_rate_limit_per_minute
    if limit <= 0:
        return
    now = request.app.state.clock()
    window = int(now // WINDOW_S)
    key = keyspace.api_rate_limit(token_digest(token), window)
    async with request.app.state.redis.pipeline(transaction=False) as pipe:
        pipe.incr(key)
        pipe.expire(key, WINDOW_S * 2)
        used, _ = await pipe.execute()
    if used > limit:
        retry = max(1, int((window + 1) * WINDOW_S - now + 0.999))
        raise HTTPError(429, "rate_limited", f"over {limit} requests per minute for this token",
                        {"Retry-After": str(retry)})


def unavailable(exc: BaseException) -> Response:
    metrics.STORE_ERRORS.inc()
    logger.warning("KPI store unavailable: %s", exc.__class__.__name__)
    return error(503, "store_unavailable", "KPI store unavailable, retry", {"Retry-After": "1"})


def guard(roles: tuple[str, ...] = READ) -> Callable[[Endpoint], Endpoint]:
    """Check the token's role, count it against its rate limit, and map errors to JSON bodies."""

    def wrap(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def guarded(request: Request) -> Response:
            for attempt in range(1 + DROPPED_RETRIES):
                try:
                    await overrides.refresh(request)
                    token, claims = authenticate(request, roles)
                    await rate_limit(request, token)
                    request.state.claims = claims
                    return await endpoint(request)
                except HTTPError as exc:
                    return error(exc.status, exc.code, exc.detail, exc.headers)
                except DROPPED as exc:
                    # a pooled connection that died with the server (a restart): the pool drops
                    # it, and the request is tried once more on a fresh one
                    if attempt < DROPPED_RETRIES:
                        continue
                    return unavailable(exc)
                except (redis.RedisError, OSError) as exc:
                    return unavailable(exc)
            raise AssertionError("unreachable")

        return guarded

    return wrap
