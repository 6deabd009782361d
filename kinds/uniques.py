"""The ``uniques`` kind: distinct actors (or distinct values of a field) per UTC day, HyperLogLogs.

Two layouts, both read here only:

- the actors (no ``field``): the base aggregate ``keyspace.dau`` per shard and day, PFADDed for
  every event. Actors are partitioned by shard, so the shards' counts add up; a range's distinct
  actors are one multi-key PFCOUNT per shard (its daily keys share the shard's hash tag). With
  ``window_days`` > 1 (weekly and monthly actives) each day's value is the distinct actors of the
  window ending that day.
- a field's values (``field``): the KPI's own HLL ``keyspace.kpi`` per shard and day, written by
  the ``P`` op (``emit`` below). Values are not partitioned by shard, so shards are unioned
  (``base.union_count``).

Each closed day's value (daily, windowed, a field's) is kept as a rollup (``kinds.rollups.per_day``),
so a long range is one HMGET plus the open days read live.

Error: Redis's HLL has a standard error of 0.81 % (16384 registers), less in its sparse encoding.
"""

from __future__ import annotations

from datetime import date, timedelta

import redis.asyncio as aredis

from kinds import ops, rollups
from kinds.base import Query, Row, per_day, union_count
from schemas import keyspace
from schemas.catalog import StoredEvent
from schemas.kpis import Kpi
from schemas.settings import Settings

TOTAL_MEANS = "distinct values in the range (not the sum of the daily values)"
WINDOW_TOTAL_MEANS = "the value on the range's last day"


def total_means(kpi: Kpi) -> str:
    """What the range total means (the summary's ``total_means``)."""
    return WINDOW_TOTAL_MEANS if kpi.window_days > 1 else TOTAL_MEANS


BASE = "@actors"  # the rollups of the base actor HLLs, which every profile keeps


async def actors_per_day(r: aredis.Redis, s: Settings, days: list[date]) -> list[int]:
    """Each day's distinct actors (the upper bound on the actors behind any cell of that day)."""
    async def live(days: list[date]) -> list[int]:
        counts = await per_day(r, s, days, lambda p, shard, d: p.execute_command(
            "PFCOUNT", keyspace.dau(shard, d.isoformat())))
        return [int(sum(c)) for c in counts]

    return await rollups.per_day(r, s, BASE, "d", days, live)


async def actors_in(r: aredis.Redis, s: Settings, days: list[date]) -> int:
    """Actors active at least once on any of ``days``: one multi-key PFCOUNT per shard."""
    async with r.pipeline(transaction=False) as pipe:
        for shard in range(s.stream_shards):
            pipe.execute_command("PFCOUNT", *[keyspace.dau(shard, d.isoformat()) for d in days])
        counts = await pipe.execute()
    return int(sum(counts))


async def rolling(r: aredis.Redis, s: Settings, days: list[date], window: int) -> list[int]:
    """For each day, the actors active in the ``window`` days ending that day."""
    async def live(days: list[date]) -> list[int]:
        counts = await per_day(r, s, days, lambda p, shard, d: p.execute_command(
            "PFCOUNT", *[keyspace.dau(shard, (d - timedelta(days=i)).isoformat()) for i in range(window)]))
        return [int(sum(c)) for c in counts]

    return await rollups.per_day(r, s, BASE, f"w{window}", days, live)


async def field_per_day(r: aredis.Redis, s: Settings, kpi: Kpi, days: list[date]) -> list[int]:
    async def live(days: list[date]) -> list[int]:
        out = []
        for d in days:
            keys = [keyspace.kpi(shard, kpi.name, d.isoformat()) for shard in range(s.stream_shards)]
            out.append(await union_count(r, keys))
        return out

    return await rollups.per_day(r, s, kpi.name, "d", days, live)


async def series(r: aredis.Redis, s: Settings, q: Query) -> list[Row]:
    days, kpi = q.days, q.kpi
    if kpi.field:
        values = await field_per_day(r, s, kpi, days)
    elif kpi.window_days > 1:
        values = await rolling(r, s, days, kpi.window_days)
    else:
        values = await actors_per_day(r, s, days)
    return [{"date": d.isoformat(), "value": v} for d, v in zip(days, values)]


async def total(r: aredis.Redis, s: Settings, q: Query, days: list[date]) -> int:
    kpi = q.kpi
    if kpi.field:
        keys = [keyspace.kpi(shard, kpi.name, d.isoformat()) for d in days for shard in range(s.stream_shards)]
        return await union_count(r, keys)
    if kpi.window_days > 1:
        return (await rolling(r, s, days[-1:], kpi.window_days))[0]
    return await actors_in(r, s, days)


# -- writes (a field's values; the actors are a base aggregate, aggregator/effects.py) ---------
# Ops: ``P`` (PFADD of a chunk of members), ``E``.
def adder(i: int, kpi: Kpi) -> ops.Adder:
    field = kpi.field or ""

    def add_unique(day: ops.DayKpis, ev: StoredEvent) -> None:
        value = ops.dimension_value(ev, field)
        if value is not None:
            s = day.uniques.get(i)
            if s is None:
                s = day.uniques[i] = set()
            s.add(value)

    return add_unique


def emit(fx: ops.Effects, shard: int, day: str, kpis: tuple[Kpi, ...], acc: dict[int, set[str]],
         chunk: int, written: set[str]) -> None:
    for i, members in acc.items():
        key = keyspace.kpi(shard, kpis[i].name, day)
        ordered = list(members)
        for start in range(0, len(ordered), chunk):
            part = ordered[start : start + chunk]
            fx.ops += ["P", fx.key(key), len(part), *part]
        written.add(key)
