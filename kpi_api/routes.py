"""KPI routes: ``/internal/analytics/kpis/<kpi>`` time series, their summaries and heatmaps.

The seed-003 four (``daily-active-villages``, ``session-duration``, ``dialogue-opens``,
``command-executions``) answer ``[{date, value}]`` exactly as before; every registered KPI is
served the same way, with ``granularity``, ``group_by`` and ``limit`` where it supports them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

import kinds
from kpi_api import csv_columns, kpis, metrics as api_metrics, params
from kpi_api.auth import guard
from kpi_api.cache import ttl_for
from kpi_api.errors import BadRequest
from schemas.days import days_between


async def cached(request: Request, key: tuple[Any, ...], last_day: Any,
                 compute: Callable[[], Awaitable[Any]]) -> Response:
    """Answer from the cache or compute; lifetime by whether ``last_day`` is still open."""
    state = request.app.state
    value = state.cache.get(key)
    hit = value is not None
    api_metrics.CACHE.labels("hit" if hit else "miss").inc()
    ttl = ttl_for(last_day, state.clock(), state.settings)
    if value is None:
        value = await compute()
        state.cache.put(key, value, ttl)
    return JSONResponse(value, headers={"X-Cache": "hit" if hit else "miss",
                                        "Cache-Control": f"private, max-age={ttl}"})


@guard()
async def kpi(request: Request) -> Response:
    q = kpis.parse(request, kpis.lookup(request, request.path_params["kpi"]))
    r, s = request.app.state.redis, request.app.state.settings
    return await cached(request, q.cache_key("series"), q.last_day, lambda: kpis.series(r, s, q))


@guard()
async def kpi_summary(request: Request) -> Response:
    """Range total, the previous period's total (shifted by whole weeks) and the delta."""
    q = kpis.parse(request, kpis.lookup(request, request.path_params["kpi"]))
    r, s = request.app.state.redis, request.app.state.settings
    return await cached(request, q.cache_key("summary"), q.last_day, lambda: kpis.summary(r, s, q))


@guard()
async def kpi_heatmap(request: Request) -> Response:
    q = kpis.parse(request, kpis.lookup(request, request.path_params["kpi"]))
    r, s = request.app.state.redis, request.app.state.settings
    return await cached(request, q.cache_key("heatmap"), q.end, lambda: kpis.heatmap(r, s, q))


@guard()
async def kpi_top(request: Request) -> Response:
    """A top-N KPI's table over the range (``limit``, default 10), or all time (``all_time=1``)."""
    q = kpis.parse(request, kpis.lookup(request, request.path_params["kpi"]))
    all_time = params.choice(request, "all_time", ("0", "1", "true", "false"), "0") in ("1", "true")
    r, s = request.app.state.redis, request.app.state.settings
    return await cached(request, (*q.cache_key("top"), all_time), q.end,
                        lambda: kpis.top_table(r, s, q, all_time))


@guard()
async def kpi_list(request: Request) -> Response:
    s = request.app.state.settings
    return JSONResponse({
        "profile": s.analytics_profile,
        "kpis": [kpis.describe(k) for k in kpis.active(request).values()],
        "cache_seconds": s.kpi_cache_seconds, "cache_closed_seconds": s.kpi_cache_closed_seconds,
        "max_range_days": s.kpi_max_range_days, "min_group_size": s.kpi_min_group_size,
    })


@guard()
async def kpi_csv(request: Request) -> Response:
    """The dashboard's numbers as CSV: one row per day, one column per daily KPI of the profile."""
    start, end = params.date_range(request)
    r, s = request.app.state.redis, request.app.state.settings
    known = kpis.active(request)
    today = datetime.fromtimestamp(request.app.state.clock(), timezone.utc).date()
    wanted = csv_columns.columns(s.analytics_profile, known)
    columns = [await kpis.series(r, s, c.query(known[c.kpi], start, end, today)) for c in wanted]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["date", *(c.name for c in wanted)])
    by_day = [{row["date"]: row["value"] for row in col} for col in columns]
    for d in days_between(start, end):
        w.writerow([d.isoformat(), *(col.get(d.isoformat()) for col in by_day)])
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="kpis_{start}_{end}.csv"'})


@guard()
async def metrics(request: Request) -> Response:
    """Seed 000: ``/api/analytics/metrics?metric=<kpi>&start=&end=`` -> series and range total."""
    name = request.query_params.get("metric")
    known = kpis.active(request)
    if not name:
        raise BadRequest(f"query parameter 'metric' is required; one of {', '.join(sorted(known))}")
    kpi = known.get(name)
    if kpi is None:
        raise BadRequest(f"unknown metric {name!r}; known: {', '.join(sorted(known))}")
    start, end = params.date_range(request)
    today = datetime.fromtimestamp(request.app.state.clock(), timezone.utc).date()
    q = kpis.Query(kpi, start, end, today=today)
    r, s = request.app.state.redis, request.app.state.settings

    async def compute() -> dict[str, Any]:
        return {"metric": name, "start": start.isoformat(), "end": end.isoformat(),
                "series": await kpis.series(r, s, q), "total": await kpis.total(r, s, q, start, end),
                "total_means": kinds.module(kpi.kind).total_means(kpi)}

    return await cached(request, q.cache_key("metrics"), end, compute)
