"""The seed-003 KPI routes: ``/internal/analytics/kpis/<kpi>?start=&end=`` -> ``[{date, value}]``."""

from __future__ import annotations

from datetime import date

import redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kpi_api import queries
from schemas import tokens
from schemas.service import error

METRICS = ("avg", "p50", "p95")
COUNT_KPIS = {"dialogue-opens": "dialogue_open", "command-executions": "command_executed"}


class BadRequest(Exception):
    pass


def _date(request: Request, name: str) -> date:
    raw = request.query_params.get(name)
    if not raw:
        raise BadRequest(f"query parameter {name!r} is required (YYYY-MM-DD)")
    try:
        return date.fromisoformat(raw) if len(raw) == 10 else _bad_date(name, raw)
    except ValueError:
        return _bad_date(name, raw)


def _bad_date(name: str, raw: str) -> date:
    raise BadRequest(f"{name}={raw!r} is not a date (YYYY-MM-DD)")


def _range(request: Request) -> tuple[date, date]:
    start, end = _date(request, "start"), _date(request, "end")
    if end < start:
        raise BadRequest(f"end {end} is before start {start}")
    limit = request.app.state.settings.kpi_max_range_days
    if (end - start).days + 1 > limit:
        raise BadRequest(f"range is {(end - start).days + 1} days, over the {limit}-day maximum")
    return start, end


def authorize(request: Request) -> Response | None:
    token = tokens.bearer(request.headers.get("authorization"))
    if token is None:
        return error(401, "unauthorized", "bearer token required", {"WWW-Authenticate": "Bearer"})
    try:
        tokens.verify(request.app.state.settings.jwt_secret_key, token)
    except tokens.TokenError as exc:
        return error(exc.status, "unauthorized" if exc.status == 401 else "forbidden", exc.detail)
    return None


async def kpi(request: Request) -> Response:
    denied = authorize(request)
    if denied:
        return denied
    name = request.path_params["kpi"]
    try:
        start, end = _range(request)
        metric = request.query_params.get("metric", "avg")
        if name == "session-duration" and metric not in METRICS:
            raise BadRequest(f"metric={metric!r}: use one of {', '.join(METRICS)}")
        if name != "daily-active-villages" and name != "session-duration" and name not in COUNT_KPIS:
            known = ["daily-active-villages", "session-duration", *COUNT_KPIS]
            return error(404, "unknown_kpi", f"unknown KPI {name!r}; known: {', '.join(known)}")
    except BadRequest as exc:
        return error(400, "bad_request", str(exc))
    cache = request.app.state.cache
    cache_key = (name, metric if name == "session-duration" else None, start, end)
    series = cache.get(cache_key)
    hit = series is not None
    if series is None:
        r, s = request.app.state.redis, request.app.state.settings
        try:
            if name == "daily-active-villages":
                series = await queries.daily_uniques(r, s, start, end)
            elif name == "session-duration":
                series = await queries.session_duration(r, s, metric, start, end)
            else:
                series = await queries.daily_count(r, s, COUNT_KPIS[name], start, end)
        except (redis.RedisError, OSError):
            return error(503, "store_unavailable", "KPI store unavailable, retry", {"Retry-After": "1"})
        cache.put(cache_key, series)
    max_age = request.app.state.settings.kpi_cache_seconds
    return JSONResponse(
        series, headers={"X-Cache": "hit" if hit else "miss", "Cache-Control": f"private, max-age={max_age}"}
    )
