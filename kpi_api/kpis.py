"""The KPI registry and how each kind of KPI is computed from the aggregates in Redis.

Each KPI is declared once here (name, kind, which granularities and breakdowns it supports); the
generic route serves any registered KPI. The active profile's KPI catalog (``schemas/profiles``)
plugs in through ``registry``: every KPI it declares is served too, read by ``kpi_api.declared``.

Every day (and hour) is a UTC day of the corrected event time, because that is what the workers
key their aggregates by; so one day's numbers agree across every route.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import redis.asyncio as aredis
from starlette.requests import Request

from kpi_api import declared, params, privacy, queries
from kinds import count, first_seen, retention
from kpi_api.errors import BadRequest
from schemas import profiles
from schemas.days import days_between
from schemas.kpis import Kpi
from schemas.settings import Settings
from schemas.sketch import Sketch

Row = dict[str, Any]
METRICS = ("avg", "p50", "p95")
GRANULARITIES = ("day", "hour")
MAX_GROUPS = 1000


@dataclass(frozen=True)
class KPI:
    name: str
    kind: str  # uniques | rolling_uniques | duration | count | events | declared
    description: str
    total_means: str
    event: str | None = None
    window_days: int = 1
    granularities: tuple[str, ...] = ("day",)
    group_by: tuple[str, ...] = ()
    metrics: tuple[str, ...] = ()
    forced_group: str | None = None
    spec: Kpi | None = None  # kind "declared": the profile's declaration, read by kpi_api.declared

    def describe(self) -> dict[str, Any]:
        out = {"name": self.name, "kind": self.kind, "description": self.description,
               "granularities": list(self.granularities), "group_by": list(self.group_by),
               "metrics": list(self.metrics), "total_means": self.total_means}
        if self.spec is not None:
            out.update(declared_kind=self.spec.kind, unit=self.spec.unit,
                       top=self.spec.kind == "top", all_time=self.spec.all_time)
            if self.spec.kind == "retention":
                out["after"] = list(retention.AFTER)
        return out


REGISTRY: dict[str, KPI] = {}


def register(kpi: KPI) -> None:
    REGISTRY[kpi.name] = kpi


for _kpi in (
    KPI("daily-active-villages", "uniques", "distinct villages active on each UTC day",
        "distinct villages active at least once in the range (not the sum of the daily values)"),
    KPI("weekly-active-villages", "rolling_uniques", "distinct villages active in the 7 days ending each day",
        "the value on the range's last day", window_days=7),
    KPI("monthly-active-villages", "rolling_uniques", "distinct villages active in the 30 days ending each day",
        "the value on the range's last day", window_days=30),
    KPI("session-duration", "duration", "session length in seconds, by the UTC day the session started",
        "the metric over every session started in the range", metrics=METRICS),
    KPI("dialogue-opens", "count", "dialogue_open events", "events in the range",
        event="dialogue_open", granularities=GRANULARITIES),
    KPI("command-executions", "count", "command_executed events", "events in the range",
        event="command_executed", granularities=GRANULARITIES),
    KPI("events", "events", "all accepted events (filter with event_name=)", "events in the range",
        granularities=GRANULARITIES, group_by=("event_name",)),
    KPI("events-by-type", "events", "events per event name", "events in the range",
        granularities=GRANULARITIES, group_by=("event_name",), forced_group="event_name"),
):
    register(_kpi)


@dataclass(frozen=True)
class Query:
    kpi: KPI
    start: date
    end: date
    granularity: str = "day"
    group_by: str | None = None
    limit: int | None = None
    metric: str = "avg"
    event_name: str | None = None
    extra: tuple[Any, ...] = field(default=())
    after: int = 1  # retention: the day offset N
    today: date | None = None  # retention: days D whose D+N is after it are still to come

    @property
    def days(self) -> list[date]:
        return days_between(self.start, self.end)

    @property
    def retention(self) -> bool:
        return self.kpi.spec is not None and self.kpi.spec.kind == "retention"

    @property
    def first_seen(self) -> str | None:
        """A ``total_actors`` or ``new_actors`` KPI's kind, else None."""
        kind = self.kpi.spec.kind if self.kpi.spec is not None else None
        return kind if kind in first_seen.KINDS else None

    @property
    def last_day(self) -> date:
        """The last day the answer reads: a retention's D+N, else the range's end."""
        return self.end + timedelta(days=self.after) if self.retention else self.end

    def now(self) -> date:
        return self.today or datetime.now(timezone.utc).date()

    def cache_key(self, what: str) -> tuple[Any, ...]:
        return (what, self.kpi.name, self.start, self.end, self.granularity, self.group_by,
                self.limit, self.metric if self.kpi.metrics else None, self.event_name,
                (self.after, self.now()) if self.retention else None)


_TOTALS = {
    "uniques": "distinct values in the range (not the sum of the daily values)",
    "session": "the metric over every session started in the range",
    "sum": "the sum over the range",
    "top": "values counted over the range",
    "count": "events in the range",
    "retention": "actors retained over actors in every cohort of the range whose day D+N has come",
    "total_actors": "the value on the range's last day: distinct actors seen up to it",
    "new_actors": "actors first seen within the range",
}


def _from_spec(spec: Kpi) -> KPI:
    what = f"distinct {spec.field}" if spec.kind == "uniques" and spec.field else spec.kind
    description = spec.description or f"{what} of {', '.join(spec.events) or 'every event'}"
    return KPI(spec.name, "declared", description, _TOTALS[spec.kind], group_by=spec.dimensions,
               metrics=METRICS if spec.kind == "session" else (), spec=spec)


@functools.cache
def registry(profile: str) -> dict[str, KPI]:
    """The KPIs served for a profile: the built-ins its events feed, then its declared KPIs.

    A built-in count of an event the profile does not have (seed 003's dialogue opens under seed
    000) is left out; a declared KPI named like a built-in is served by the built-in.
    """
    names = set(profiles.event_names(profile))
    out = {n: k for n, k in REGISTRY.items() if k.kind != "count" or k.event in names}
    for spec in profiles.load(profile).kpis:
        builtin = out.get(spec.name)
        if builtin is None:
            out[spec.name] = _from_spec(spec)
        elif extra := tuple(d for d in spec.dimensions if d not in builtin.group_by):
            # the built-in keeps its own breakdowns; the declared ones are read from the KPI's keys
            out[spec.name] = dataclasses.replace(builtin, group_by=builtin.group_by + extra, spec=spec)
    return out


def active(request: Request) -> dict[str, KPI]:
    return registry(request.app.state.settings.analytics_profile)


def lookup(request: Request, name: str) -> KPI:
    known = active(request)
    kpi = known.get(name)
    if kpi is None:
        raise BadRequest(f"unknown KPI {name!r}; known: {', '.join(sorted(known))}")
    return kpi


def parse(request: Request, kpi: KPI) -> Query:
    start, end = params.date_range(request)
    granularity = params.choice(request, "granularity", GRANULARITIES, "day") or "day"
    if granularity not in kpi.granularities:
        raise BadRequest(f"granularity={granularity!r} is not available for {kpi.name}; "
                         f"use {', '.join(kpi.granularities)}")
    group_by = request.query_params.get("group_by") or kpi.forced_group
    if group_by is not None and group_by not in kpi.group_by:
        available = ", ".join(kpi.group_by) or "none"
        raise BadRequest(f"group_by={group_by!r} is not available for {kpi.name}; dimensions: {available}")
    limit = params.positive_int(request, "limit", None, MAX_GROUPS)
    if limit is not None and group_by is None and not (kpi.spec and kpi.spec.kind == "top"):
        raise BadRequest("limit applies to a breakdown: add group_by")
    metric = "avg"
    if kpi.metrics:
        metric = params.choice(request, "metric", METRICS, "avg") or "avg"
    event_name = request.query_params.get("event_name") or None
    if event_name is not None:
        if kpi.kind != "events":
            raise BadRequest(f"event_name applies to the events KPIs, not {kpi.name}")
        known = profiles.event_names(request.app.state.settings.analytics_profile)
        if event_name not in known:
            raise BadRequest(f"unknown event_name {event_name!r}; known: {', '.join(known)}")
    if granularity == "hour" and _declared_only(kpi, group_by):
        raise BadRequest(f"group_by={group_by!r} is kept per day only: use granularity=day")
    if granularity == "hour" and (end - start).days + 1 > 92:
        raise BadRequest("granularity=hour allows at most 92 days")
    if kpi.spec is not None and kpi.spec.kind == "retention":
        after = params.positive_int(request, "after", 1, retention.MAX_AFTER) or 1
        today = datetime.fromtimestamp(request.app.state.clock(), timezone.utc).date()
        return Query(kpi, start, end, granularity, group_by, limit, metric, event_name,
                     after=after, today=today)
    if request.query_params.get("after"):
        raise BadRequest(f"after applies to retention KPIs, not {kpi.name}")
    return Query(kpi, start, end, granularity, group_by, limit, metric, event_name)


def _event_fields(counters: dict[str, int], only: str | None) -> dict[str, int]:
    return count.totals(counters, only)


async def series(r: aredis.Redis, s: Settings, q: Query) -> list[Row]:
    kind = q.kpi.kind
    days = q.days
    if q.retention:
        return await retention.read(r, s, days, q.after, q.now())
    if q.first_seen:
        return await first_seen.read(r, s, q.first_seen, days, q.now())
    if kind == "declared" or _declared_only(q.kpi, q.group_by):
        return await _declared_series(r, s, q)
    if kind == "uniques":
        return await queries.daily_uniques(r, s, q.start, q.end)
    if kind == "rolling_uniques":
        values = await queries.rolling_uniques(r, s, days, q.kpi.window_days)
        return [{"date": d.isoformat(), "value": v} for d, v in zip(days, values)]
    if kind == "duration":
        return await queries.session_duration(r, s, q.metric, q.start, q.end)
    if kind == "count" and q.granularity == "day":
        assert q.kpi.event is not None
        return await queries.daily_count(r, s, q.kpi.event, q.start, q.end)
    counters = await queries.counters_per_day(r, s, days)
    bound = await queries.uniques_per_day(r, s, days) if q.granularity == "hour" or q.group_by else None
    rows: list[Row] = []
    if kind == "count":
        for d, c in zip(days, counters):
            for h in range(24):
                rows.append({"date": d.isoformat(), "hour": h, "value": count.hourly(c, (q.kpi.event,), h)})
        return privacy.suppress(rows, _bounds(rows, days, bound), s.kpi_min_group_size)
    # events: every event name the counters hold (any catalog), optionally one, optionally broken down
    names: dict[str, int] = {}
    for c in counters:
        for name, v in _event_fields(c, q.event_name).items():
            names[name] = names.get(name, 0) + v
    groups = sorted(names, key=lambda n: (-names[n], n))
    if q.limit is not None:
        groups = groups[: q.limit]
    hours: list[int | None] = list(range(24)) if q.granularity == "hour" else [None]
    for d, c in zip(days, counters):
        for h in hours:
            base: Row = {"date": d.isoformat()} if h is None else {"date": d.isoformat(), "hour": h}

            def value(events: Any, c: dict[str, int] = c, h: int | None = h) -> int:
                return sum(c.get(n, 0) for n in events) if h is None else count.hourly(c, events, h)

            if q.group_by is None:
                rows.append({**base, "value": value(names)})
            else:
                for n in sorted(groups):
                    rows.append({**base, q.group_by: n, "value": value((n,))})
    if bound is None:
        return rows
    return privacy.suppress(rows, _bounds(rows, days, bound), s.kpi_min_group_size)


def _declared_only(kpi: KPI, group_by: str | None) -> bool:
    """A built-in broken down by a dimension that only the profile's declaration keeps, per day
    (events by platform), not the built-in's own counters."""
    return (group_by is not None and kpi.spec is not None
            and group_by not in REGISTRY.get(kpi.name, kpi).group_by)


async def _declared_series(r: aredis.Redis, s: Settings, q: Query) -> list[Row]:
    assert q.kpi.spec is not None
    rows = await declared.read(r, s, q.kpi.spec, q.days, group_by=q.group_by, limit=q.limit,
                               metric=q.metric)
    if q.group_by is None:
        return rows
    bound = await queries.uniques_per_day(r, s, q.days)
    return privacy.suppress(rows, _bounds(rows, q.days, bound), s.kpi_min_group_size)


async def top_table(r: aredis.Redis, s: Settings, q: Query, all_time: bool) -> dict[str, Any]:
    """A top KPI's table ``[{key, value}]`` over the range (or all time), largest first.

    Cells are suppressed when fewer than k actors were active in the range, the upper bound on
    the actors behind any one cell.
    """
    spec = q.kpi.spec
    if spec is None or spec.kind != "top":
        raise BadRequest(f"{q.kpi.name} is not a top-N KPI")
    if all_time and not spec.all_time:
        raise BadRequest(f"{q.kpi.name} keeps no all-time table")
    rows = await declared.top(r, s, spec, None if all_time else q.days, q.limit or 10)
    actors = await queries.distinct_uniques(r, s, q.days)
    rows = privacy.suppress(rows, [actors] * len(rows), s.kpi_min_group_size)
    out: dict[str, Any] = {"kpi": q.kpi.name, "field": spec.field, "rows": rows}
    if all_time:
        out["all_time"] = True
    else:
        out.update(start=q.start.isoformat(), end=q.end.isoformat())
    return out


def _bounds(rows: list[Row], days: list[date], dau: list[int] | None) -> list[int]:
    """Upper bound on the villages behind each row: every event adds its village to its day's DAU."""
    assert dau is not None
    by_day = {d.isoformat(): v for d, v in zip(days, dau)}
    return [by_day[row["date"]] for row in rows]


def previous_period(start: date, end: date) -> tuple[date, date]:
    """The comparison period: shifted back by whole weeks (at least one) so weekdays line up."""
    n = (end - start).days + 1
    shift = timedelta(days=7 * max(1, math.ceil(n / 7)))
    return start - shift, end - shift


async def total(r: aredis.Redis, s: Settings, q: Query, start: date, end: date) -> float | int | None:
    days = days_between(start, end)
    if q.retention:
        return await retention.total(r, s, days, q.after, q.now())
    if q.first_seen:
        return await first_seen.total(r, s, q.first_seen, days, q.now())
    kind = q.kpi.kind
    spec = q.kpi.spec if kind == "declared" else None
    if spec is not None:
        if spec.kind == "uniques" and spec.field:
            return await declared.uniques_total(r, s, spec, days)
        if spec.kind == "uniques":
            return await queries.distinct_uniques(r, s, days)
        if spec.kind != "session":
            rows = await declared.read(r, s, spec, days)
            return round(sum(row["value"] for row in rows), 6)
        kind = "duration"  # a declared session KPI: the same sketches as the built-in
    if kind == "uniques":
        return await queries.distinct_uniques(r, s, days)
    if kind == "rolling_uniques":
        return (await queries.rolling_uniques(r, s, [end], q.kpi.window_days))[0]
    if kind == "duration":
        merged = Sketch()
        for sk in await queries.sketches_per_day(r, s, days):
            merged.absorb(sk)
        return queries.sketch_value(merged, q.metric)
    counters = await queries.counters_per_day(r, s, days)
    if kind == "count":
        assert q.kpi.event is not None
        return sum(c.get(q.kpi.event, 0) for c in counters)
    return sum(sum(_event_fields(c, q.event_name).values()) for c in counters)


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
        "total": now_total, "total_means": q.kpi.total_means,
        "previous": {"start": prev_start.isoformat(), "end": prev_end.isoformat(), "total": prev_total},
        "delta": delta, "delta_pct": round(100 * delta / prev_total, 1) if prev_total and delta is not None else None,
    }
    if q.kpi.metrics:
        out["metric"] = q.metric
    if q.event_name:
        out["event_name"] = q.event_name
    return out


async def heatmap(r: aredis.Redis, s: Settings, q: Query) -> dict[str, Any]:
    """Events by weekday (0 = Monday) and UTC hour over the range, from the hourly counters."""
    if q.kpi.kind not in ("count", "events"):
        raise BadRequest(f"{q.kpi.name} has no hourly counters for a heatmap")
    days = q.days
    counters = await queries.counters_per_day(r, s, days)
    dau = await queries.uniques_per_day(r, s, days)
    names = [q.kpi.event] if q.kpi.kind == "count" else None
    cells = [[0] * 24 for _ in range(7)]
    bound = [0] * 7
    for d, c, u in zip(days, counters, dau):
        wd = d.weekday()
        bound[wd] += u
        wanted = names or list(_event_fields(c, q.event_name))
        for h in range(24):
            cells[wd][h] += count.hourly(c, wanted, h)
    rows = [{"weekday": wd, "hour": h, "value": cells[wd][h]} for wd in range(7) for h in range(24)]
    rows = privacy.suppress(rows, [bound[row["weekday"]] for row in rows], s.kpi_min_group_size)
    return {"kpi": q.kpi.name, "start": q.start.isoformat(), "end": q.end.isoformat(), "cells": rows,
            "max": max((row["value"] or 0 for row in rows), default=0)}
