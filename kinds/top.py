"""The ``top`` kind: how often each value of a field occurred, per UTC day (and all time).

A top KPI's sorted set per shard and day (``keyspace.kpi``) scores each member by its events (the
``Z`` op, ``aggregator/declared.py``); with ``all_time`` a running table without expiry is kept
beside it (``keyspace.kpi_all_time``). Values are not partitioned by shard: the shards' scores add.
As a daily series, a top KPI is the events counted into its table that day.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import redis.asyncio as aredis

from kinds import ops, rollups, uniques
from kinds.base import Query, Row, per_day, suppress
from schemas import keyspace
from schemas.catalog import StoredEvent
from schemas.kpis import Kpi
from schemas.settings import Settings

TOTAL_MEANS = "values counted over the range"


def total_means(kpi: Kpi) -> str:
    """What the range total means (the summary's ``total_means``)."""
    return TOTAL_MEANS
DEFAULT_LIMIT = 10


async def tables_per_day(r: aredis.Redis, s: Settings, kpi: Kpi, days: list[date]) -> list[dict[str, int]]:
    """Each day's table ``{member: events}`` summed over the shards: closed days from their
    rollups, the others live (one ZRANGE per shard and day, one round trip)."""
    async def live(days: list[date]) -> list[dict[str, int]]:
        replies = await per_day(r, s, days, lambda p, shard, d: p.zrange(
            keyspace.kpi(shard, kpi.name, d.isoformat()), 0, -1, withscores=True))
        out = []
        for shards in replies:
            merged: dict[str, int] = {}
            for reply in shards:
                for member, score in reply:
                    key = member.decode()
                    merged[key] = merged.get(key, 0) + int(score)
            out.append(merged)
        return out

    return await rollups.per_day(r, s, kpi.name, "t", days, live)


async def table(r: aredis.Redis, s: Settings, q: Query, all_time: bool) -> list[Row]:
    """``[{"key", "value"}]`` by value over the range (or all time), largest first; the whole list."""
    totals: dict[str, int] = {}
    if all_time:
        async with r.pipeline(transaction=False) as pipe:
            for shard in range(s.stream_shards):
                pipe.zrange(keyspace.kpi_all_time(shard, q.kpi.name), 0, -1, withscores=True)
            for reply in await pipe.execute():
                for member, score in reply:
                    key = member.decode()
                    totals[key] = totals.get(key, 0) + int(score)
    else:
        for day in await tables_per_day(r, s, q.kpi, q.days):
            for key, n in day.items():
                totals[key] = totals.get(key, 0) + n
    ordered = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    return [{"key": k, "value": v} for k, v in ordered]


async def answer(r: aredis.Redis, s: Settings, q: Query, all_time: bool) -> dict[str, Any]:
    """The top table's page ``rows`` (``limit`` rows from ``offset``), largest first.

    Cells are suppressed when fewer than k actors were active in the range, the upper bound on
    the actors behind any one cell.
    """
    rows = await table(r, s, q, all_time)
    limit = q.limit or DEFAULT_LIMIT
    page = rows[q.offset : q.offset + limit]
    actors = await uniques.actors_in(r, s, q.days)
    page = suppress(page, [actors] * len(page), s.kpi_min_group_size)
    more = q.offset + limit < len(rows)
    out: dict[str, Any] = {"kpi": q.kpi.name, "field": q.kpi.field, "rows": page, "offset": q.offset,
                           "limit": limit, "total_rows": len(rows),
                           "next_offset": q.offset + limit if more else None}
    if all_time:
        out["all_time"] = True
    else:
        out.update(start=q.start.isoformat(), end=q.end.isoformat())
    return out


async def series(r: aredis.Redis, s: Settings, q: Query) -> list[Row]:
    """Per day, the total counted into the table (a time series for charts)."""
    return [{"date": d.isoformat(), "value": sum(day.values())}
            for d, day in zip(q.days, await tables_per_day(r, s, q.kpi, q.days))]


async def total(r: aredis.Redis, s: Settings, q: Query, days: list[date]) -> int:
    return sum(sum(day.values()) for day in await tables_per_day(r, s, q.kpi, days))


# -- writes: ``Z`` (ZINCRBY of one member), ``E`` (not for the all-time tables) ----------------
def adder(i: int, kpi: Kpi) -> ops.Adder:
    field = kpi.field or ""
    builtin = field in ops.BUILTIN

    def add_top(day: ops.DayKpis, ev: StoredEvent) -> None:
        member = ev.payload.get(field) if not builtin else None
        if type(member) is not str:  # identifiers are strings: the rest is rare
            member = ops.dimension_value(ev, field)
        if member is not None:
            k = (i, member)
            day.top[k] = day.top.get(k, 0) + 1

    return add_top


def emit(fx: ops.Effects, shard: int, day: str, kpis: tuple[Kpi, ...], acc: dict[tuple[int, str], int],
         written: set[str], persistent: set[str]) -> None:
    for (i, member), n in acc.items():
        kpi = kpis[i]
        key = keyspace.kpi(shard, kpi.name, day)
        fx.ops += ["Z", fx.key(key), member, n]
        written.add(key)
        if kpi.all_time:
            total_key = keyspace.kpi_all_time(shard, kpi.name)
            fx.ops += ["Z", fx.key(total_key), member, n]
            written.add(total_key)
            persistent.add(total_key)
