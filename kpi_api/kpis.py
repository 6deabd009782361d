"""The KPIs the API serves, and how a request's parameters become a read of one of them.

Every KPI is a declaration (``schemas.kpis.Kpi``): the active profile's own and the base KPIs
every profile serves (``schemas.kpis.served``). Its kind's module (``kinds/``) reads it; this
module only checks which options a KPI takes (granularity, breakdown, metric, offsets, paging),
and adds what no kind owns: the previous-period comparison of a summary.

Every day (and hour) is a UTC day of the corrected event time, because that is what the workers
key their aggregates by; so one day's numbers agree across every route.
"""

from __future__ import annotations

import functools
import math
from datetime import date, datetime, timedelta, timezone
from typing import Any

import redis.asyncio as aredis
from starlette.requests import Request

import kinds
from kinds import count, retention, session, top
from kinds.base import Query
from kpi_api import params
from kpi_api.errors import BadRequest
from schemas import profiles
from schemas.days import days_between
from schemas.kpis import Kpi, served
from schemas.settings import Settings

Row = dict[str, Any]
METRICS = session.METRICS
GRANULARITIES = ("day", "hour")
MAX_GROUPS = 1000
MAX_OFFSET = 1_000_000
__all__ = ["Query", "registry", "describe", "lookup", "parse", "series", "total", "summary",
           "heatmap", "top_table", "previous_period", "METRICS", "MAX_GROUPS"]


def granularities(kpi: Kpi) -> tuple[str, ...]:
    """Counts are kept per hour too (the base counters); everything else per day."""
    return GRANULARITIES if kpi.kind == "count" else ("day",)


def describe(kpi: Kpi) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": kpi.name, "kind": kpi.kind, "declared_kind": kpi.kind, "unit": kpi.unit,
        "description": kpi.description or _default_description(kpi),
        "granularities": list(granularities(kpi)), "group_by": list(kpi.dimensions),
        "metrics": list(METRICS) if kpi.kind == "session" else [],
        "total_means": kinds.module(kpi.kind).total_means(kpi),
        "top": kpi.kind == "top", "all_time": kpi.all_time,
        "field": kpi.field, "events": list(kpi.events),  # the dashboard: what a panel above already charts
    }
    if kpi.window_days > 1:
        out["window_days"] = kpi.window_days
    if kpi.kind == "retention":
        out["after"] = list(retention.AFTER)
    return out


def _default_description(kpi: Kpi) -> str:
    what = f"distinct {kpi.field}" if kpi.kind == "uniques" and kpi.field else kpi.kind
    return f"{what} of {', '.join(kpi.events) or 'every event'}"


@functools.cache
def registry(profile: str) -> dict[str, Kpi]:
    """The KPIs served under a profile, by name: the base ones, then its own declarations."""
    return {k.name: k for k in served(profiles.load(profile).kpis)}


def active(request: Request) -> dict[str, Kpi]:
    return registry(request.app.state.settings.analytics_profile)


def lookup(request: Request, name: str) -> Kpi:
    known = active(request)
    kpi = known.get(name)
    if kpi is None:
        raise BadRequest(f"unknown KPI {name!r}; known: {', '.join(sorted(known))}")
    return kpi


def parse(request: Request, kpi: Kpi) -> Query:
    start, end = params.date_range(request)
    granularity = params.choice(request, "granularity", GRANULARITIES, "day") or "day"
    if granularity not in granularities(kpi):
        raise BadRequest(f"granularity={granularity!r} is not available for {kpi.name}; "
                         f"use {', '.join(granularities(kpi))}")
    group_by = request.query_params.get("group_by") or kpi.default_group
    if group_by is not None and group_by not in kpi.dimensions:
        available = ", ".join(kpi.dimensions) or "none"
        raise BadRequest(f"group_by={group_by!r} is not available for {kpi.name}; dimensions: {available}")
    limit = params.positive_int(request, "limit", None, MAX_GROUPS)
    if limit is not None and group_by is None and kpi.kind != "top":
        raise BadRequest("limit applies to a breakdown: add group_by")
    offset = 0
    if request.query_params.get("offset"):
        if kpi.kind != "top":
            raise BadRequest(f"offset applies to the top tables, not {kpi.name}")
        offset = params.positive_int(request, "offset", 0, MAX_OFFSET, minimum=0) or 0
    metric = "avg"
    if kpi.kind == "session":
        metric = params.choice(request, "metric", METRICS, "avg") or "avg"
    event_name = request.query_params.get("event_name") or None
    if event_name is not None:
        if kpi.kind != "count" or kpi.events:
            raise BadRequest(f"event_name applies to the counts of every event, not {kpi.name}")
        known = profiles.event_names(request.app.state.settings.analytics_profile)
        if event_name not in known:
            raise BadRequest(f"unknown event_name {event_name!r}; known: {', '.join(known)}")
    if event_name is not None and count.own_breakdown(group_by):
        raise BadRequest(f"group_by={group_by!r} is kept over every event, not per event name: "
                         f"drop event_name or group by event_name")
    if granularity == "hour" and count.own_breakdown(group_by):
        raise BadRequest(f"group_by={group_by!r} is kept per day only: use granularity=day")
    if granularity == "hour" and (end - start).days + 1 > 92:
        raise BadRequest("granularity=hour allows at most 92 days")
    today = datetime.fromtimestamp(request.app.state.clock(), timezone.utc).date()
    after = 1
    if kpi.kind == "retention":
        after = params.positive_int(request, "after", 1, retention.MAX_AFTER) or 1
    elif request.query_params.get("after"):
        raise BadRequest(f"after applies to retention KPIs, not {kpi.name}")
    return Query(kpi, start, end, granularity, group_by, limit, metric, event_name,
                 after=after, today=today, offset=offset)


async def series(r: aredis.Redis, s: Settings, q: Query) -> list[Row]:
    return await kinds.module(q.kpi.kind).series(r, s, q)


async def total(r: aredis.Redis, s: Settings, q: Query, start: date, end: date) -> float | int | None:
    return await kinds.module(q.kpi.kind).total(r, s, q, days_between(start, end))


async def top_table(r: aredis.Redis, s: Settings, q: Query, all_time: bool) -> dict[str, Any]:
    if q.kpi.kind != "top":
        raise BadRequest(f"{q.kpi.name} is not a top-N KPI")
    if all_time and not q.kpi.all_time:
        raise BadRequest(f"{q.kpi.name} keeps no all-time table")
    return await top.answer(r, s, q, all_time)


async def heatmap(r: aredis.Redis, s: Settings, q: Query) -> dict[str, Any]:
    if q.kpi.kind != "count":
        raise BadRequest(f"{q.kpi.name} has no hourly counters for a heatmap")
    return await count.heatmap(r, s, q)


def previous_period(start: date, end: date) -> tuple[date, date]:
    """The comparison period: shifted back by whole weeks (at least one) so weekdays line up."""
    n = (end - start).days + 1
    shift = timedelta(days=7 * max(1, math.ceil(n / 7)))
    return start - shift, end - shift


async def summary(r: aredis.Redis, s: Settings, q: Query) -> dict[str, Any]:
    prev_start, prev_end = previous_period(q.start, q.end)
    now_total = await total(r, s, q, q.start, q.end)
    prev_total = await total(r, s, q, prev_start, prev_end)
    if now_total is None or prev_total is None:  # a retention with no cohort due
        delta = None
    else:
        delta = round(now_total - prev_total, 3)
    out: dict[str, Any] = {
        "kpi": q.kpi.name, "start": q.start.isoformat(), "end": q.end.isoformat(),
        "total": now_total, "total_means": kinds.module(q.kpi.kind).total_means(q.kpi),
        "previous": {"start": prev_start.isoformat(), "end": prev_end.isoformat(), "total": prev_total},
        "delta": delta, "delta_pct": round(100 * delta / prev_total, 1) if prev_total and delta is not None else None,
    }
    if q.kpi.kind == "session":
        out["metric"] = q.metric
    if q.event_name:
        out["event_name"] = q.event_name
    return out
