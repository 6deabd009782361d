"""The ``count`` kind: events counted per UTC day, per event name and hour, or by dimension.

Two hash layouts, both encoded and parsed here only:

- the base counters (``keyspace.counts``): field ``<event>`` is the day's total of that event,
  ``<event>@<HH>`` its count in UTC hour HH;
- a count KPI's own hash (``keyspace.kpi``): field ``<dimension>=<value>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date
from typing import Any

import redis.asyncio as aredis

from kinds import ops, rollups, uniques
from kinds.base import Query, Row, day_bounds, summed_hashes, suppress
from schemas import keyspace
from schemas.catalog import StoredEvent
from schemas.kpis import Kpi
from schemas.settings import Settings

HOUR_SEP = "@"
DIM_SEP = "="


def hour_field(event: str, hour: int) -> str:
    """The field of ``event``'s counter in UTC hour ``hour`` (0..23)."""
    return f"{event}{HOUR_SEP}{hour:02d}"


def totals(counters: Mapping[str, int], only: str | None = None) -> dict[str, int]:
    """The daily totals by event name (optionally of one event) of a day's base counters."""
    return {k: v for k, v in counters.items() if HOUR_SEP not in k and (only is None or k == only)}


def hourly(counters: Mapping[str, int], events: Iterable[str], hour: int) -> int:
    """The events of ``events`` counted in UTC hour ``hour``."""
    return sum(counters.get(hour_field(e, hour), 0) for e in events)


def dim_field(dimension: str, value: object) -> str:
    """The field of one dimension value in a count KPI's hash."""
    return f"{dimension}{DIM_SEP}{value}"


def by_dimension(fields: Mapping[str, int], dimension: str) -> dict[str, int]:
    """The counts of one dimension's values in a count KPI's (merged) hash."""
    prefix = dimension + DIM_SEP
    return {f[len(prefix):]: v for f, v in fields.items() if f.startswith(prefix)}


# -- reads -------------------------------------------------------------------------------------
# A count reads the base counters (any day or hour, by event name) unless it is broken down by one
# of its own dimensions, which only its own hash keeps, per day.
TOTAL_MEANS = "events in the range"


def total_means(kpi: Kpi) -> str:
    """What the range total means (the summary's ``total_means``)."""
    return TOTAL_MEANS
BASE_DIMENSION = "event_name"


def own_breakdown(group_by: str | None) -> bool:
    """Whether a breakdown is read from the KPI's own hash (per day only), not the base counters."""
    return group_by is not None and group_by != BASE_DIMENSION


def _names(kpi: Kpi, counters: Mapping[str, int], only: str | None) -> dict[str, int]:
    """The day's totals of the events the KPI counts (optionally one of them)."""
    return {n: v for n, v in totals(counters, only).items() if kpi.matches(n)}


async def counters_per_day(r: aredis.Redis, s: Settings, days: list[date]) -> list[dict[str, int]]:
    """Every base-counter field (``<event>`` and ``<event>@<HH>``) of each day, summed over shards."""
    return await summed_hashes(r, s, days, keyspace.counts)


BASE = "@counts"  # the rollups of the base counters, which every profile keeps


async def totals_per_day(r: aredis.Redis, s: Settings, days: list[date]) -> list[dict[str, int]]:
    """Each day's totals by event name: closed days from their rollups, the others live."""
    async def live(days: list[date]) -> list[dict[str, int]]:
        return [totals(c) for c in await counters_per_day(r, s, days)]

    return await rollups.per_day(r, s, BASE, "t", days, live)


async def _own(r: aredis.Redis, s: Settings, q: Query) -> list[Row]:
    """Rows ``{date, <dimension>, value}`` from the KPI's own hash, the ``limit`` largest groups."""
    dim, days = q.group_by or "", q.days

    async def live(days: list[date]) -> list[dict[str, int]]:
        hashes = await summed_hashes(r, s, days, lambda shard, day: keyspace.kpi(shard, q.kpi.name, day))
        return [by_dimension(h, dim) for h in hashes]

    per_day_ = await rollups.per_day(r, s, q.kpi.name, f"by:{dim}", days, live)
    grand: dict[str, int] = {}
    for h in per_day_:
        for g, v in h.items():
            grand[g] = grand.get(g, 0) + v
    groups = sorted(grand, key=lambda g: (-grand[g], g))[: q.limit]
    return [{"date": d.isoformat(), dim: g, "value": h.get(g, 0)}
            for d, h in zip(days, per_day_) for g in sorted(groups)]


async def series(r: aredis.Redis, s: Settings, q: Query) -> list[Row]:
    kpi, days = q.kpi, q.days
    k = s.kpi_min_group_size
    if own_breakdown(q.group_by):
        rows = await _own(r, s, q)
        return suppress(rows, day_bounds(rows, days, await uniques.actors_per_day(r, s, days)), k)
    # per day: the totals by event name (rolled up once closed); per hour: the whole counters
    counters = await (counters_per_day if q.granularity == "hour" else totals_per_day)(r, s, days)
    names: dict[str, int] = {}
    for c in counters:
        for name, v in _names(kpi, c, q.event_name).items():
            names[name] = names.get(name, 0) + v
    groups = sorted(sorted(names, key=lambda n: (-names[n], n))[: q.limit])
    hours: list[int | None] = list(range(24)) if q.granularity == "hour" else [None]
    rows: list[Row] = []
    for d, c in zip(days, counters):
        for h in hours:
            base: Row = {"date": d.isoformat()} if h is None else {"date": d.isoformat(), "hour": h}

            def value(events: Iterable[str], c: dict[str, int] = c, h: int | None = h) -> int:
                return sum(c.get(n, 0) for n in events) if h is None else hourly(c, events, h)

            if q.group_by is None:
                rows.append({**base, "value": value(names or kpi.events)})
            else:
                rows.extend({**base, q.group_by: n, "value": value((n,))} for n in groups)
    if q.granularity == "day" and q.group_by is None:
        return rows
    return suppress(rows, day_bounds(rows, days, await uniques.actors_per_day(r, s, days)), k)


async def total(r: aredis.Redis, s: Settings, q: Query, days: list[date]) -> int:
    return sum(sum(_names(q.kpi, c, q.event_name).values()) for c in await totals_per_day(r, s, days))


async def heatmap(r: aredis.Redis, s: Settings, q: Query) -> dict[str, Any]:
    """Events by weekday (0 = Monday) and UTC hour over the range, from the hourly counters."""
    days = q.days
    counters = await counters_per_day(r, s, days)
    actors = await uniques.actors_per_day(r, s, days)
    cells = [[0] * 24 for _ in range(7)]
    bound = [0] * 7
    for d, c, u in zip(days, counters, actors):
        wd = d.weekday()
        bound[wd] += u
        wanted = list(_names(q.kpi, c, q.event_name)) or list(q.kpi.events)
        for h in range(24):
            cells[wd][h] += hourly(c, wanted, h)
    rows = [{"weekday": wd, "hour": h, "value": cells[wd][h]} for wd in range(7) for h in range(24)]
    rows = suppress(rows, [bound[row["weekday"]] for row in rows], s.kpi_min_group_size)
    return {"kpi": q.kpi.name, "start": q.start.isoformat(), "end": q.end.isoformat(), "cells": rows,
            "max": max((row["value"] or 0 for row in rows), default=0)}


# -- writes (the worker and the backfill, through aggregator/declared.py) ---------------------
# A count by built-in dimensions only (event name, platform, app version) needs no per-event
# work: it is derived at emit time from the plan's base counters, kept per (event name, hour,
# platform, app version). Others have an adder. Ops: ``H`` (counters of one hash), ``E``.
def wide(kpi: Kpi) -> bool:
    return all(d in ops.BUILTIN for d in kpi.dimensions)


def adder(i: int, kpi: Kpi) -> ops.Adder:
    if len(kpi.dimensions) == 1 and kpi.dimensions[0] not in ops.BUILTIN:
        dim = kpi.dimensions[0]

        def add_payload_count(day: ops.DayKpis, ev: StoredEvent) -> None:
            value = ev.payload.get(dim)
            if type(value) is not str:  # identifiers are strings: the rest is rare
                value = ops.payload_value(value)
            k = (i, value)
            day.counts[k] = day.counts.get(k, 0) + 1

        return add_payload_count
    get = ops.dims_getter(kpi.dimensions)

    def add_count(day: ops.DayKpis, ev: StoredEvent) -> None:
        k = (i, get(ev))
        day.counts[k] = day.counts.get(k, 0) + 1

    return add_count


def emit(fx: ops.Effects, shard: int, day: str, kpis: tuple[Kpi, ...], wide_kpis: tuple[tuple[int, Kpi], ...],
         counts: dict[tuple[int, Any], int], base: dict[tuple[str, int, str, str], int], written: set[str]) -> None:
    """One day's count ops: the wide counts from the base counters, the others from ``counts``."""
    hincr: dict[tuple[str, str], int] = {}
    if wide_kpis:
        combos: dict[tuple[str, str, str], int] = {}
        for (name, _, platform, app_version), n in base.items():
            c = (name, platform, app_version)
            combos[c] = combos.get(c, 0) + n
        for _, kpi in wide_kpis:
            key = keyspace.kpi(shard, kpi.name, day)
            for (name, platform, app_version), n in combos.items():
                if not kpi.matches(name):
                    continue
                values = {"event_name": name, "platform": platform, "app_version": app_version}
                for dim in kpi.dimensions:
                    f = (key, dim_field(dim, values[dim]))
                    hincr[f] = hincr.get(f, 0) + n
    for (i, values), n in counts.items():
        kpi = kpis[i]
        key = keyspace.kpi(shard, kpi.name, day)
        if len(kpi.dimensions) == 1:
            values = (values,)
        for dim, value in zip(kpi.dimensions, values):
            if value is not None:
                f = (key, dim_field(dim, value))
                hincr[f] = hincr.get(f, 0) + n
    by_key: dict[str, list[tuple[str, int]]] = {}
    for (key, field), by in hincr.items():
        by_key.setdefault(key, []).append((field, by))
    for key, fields in by_key.items():
        ops.emit_counters(fx.ops, fx.key(key), fields)
        written.add(key)
