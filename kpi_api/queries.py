"""Reading KPIs: merge the per-shard aggregates of each UTC day (one round trip per query)."""

from __future__ import annotations

from datetime import date, timedelta

import redis.asyncio as aredis

from schemas import keyspace
from schemas.days import days_between
from schemas.settings import Settings
from schemas.sketch import Sketch

Series = list[dict[str, object]]


async def daily_uniques(r: aredis.Redis, s: Settings, start: date, end: date) -> Series:
    days = days_between(start, end)
    async with r.pipeline(transaction=False) as pipe:
        for d in days:
            for shard in range(s.stream_shards):
                pipe.pfcount(keyspace.dau(shard, d.isoformat()))
        counts = await pipe.execute()
    n = s.stream_shards
    # villages are partitioned by shard, so the shards' sets are disjoint and their counts add
    return [{"date": d.isoformat(), "value": sum(counts[i * n : (i + 1) * n])} for i, d in enumerate(days)]


async def daily_count(r: aredis.Redis, s: Settings, event_name: str, start: date, end: date) -> Series:
    days = days_between(start, end)
    async with r.pipeline(transaction=False) as pipe:
        for d in days:
            for shard in range(s.stream_shards):
                pipe.hget(keyspace.counts(shard, d.isoformat()), event_name)
        values = await pipe.execute()
    n = s.stream_shards
    return [
        {"date": d.isoformat(), "value": sum(int(v or 0) for v in values[i * n : (i + 1) * n])}
        for i, d in enumerate(days)
    ]


async def session_duration(
    r: aredis.Redis, s: Settings, metric: str, start: date, end: date
) -> Series:
    days = days_between(start, end)
    async with r.pipeline(transaction=False) as pipe:
        for d in days:
            for shard in range(s.stream_shards):
                pipe.hgetall(keyspace.session_sketch(shard, d.isoformat()))
        hashes = await pipe.execute()
    n = s.stream_shards
    out: Series = []
    for i, d in enumerate(days):
        sketch = Sketch()
        for h in hashes[i * n : (i + 1) * n]:
            sketch.merge(h)
        if metric == "avg":
            ms = sketch.average_ms()
        else:
            ms = sketch.quantile_ms(0.5 if metric == "p50" else 0.95)
        out.append({"date": d.isoformat(), "value": round(ms / 1000, 3)})
    return out


# -- building blocks for the generic KPI routes ---------------------------------------------
async def uniques_per_day(r: aredis.Redis, s: Settings, days: list[date]) -> list[int]:
    return [int(row["value"]) for row in await daily_uniques(r, s, days[0], days[-1])] if days else []


async def distinct_uniques(r: aredis.Redis, s: Settings, days: list[date]) -> int:
    """Villages active at least once on any of ``days``: one multi-key PFCOUNT per shard.

    A shard's daily HLLs share its hash tag, so the union is one command on one slot; villages
    are partitioned by shard, so the shards' unions are disjoint and add up.
    """
    async with r.pipeline(transaction=False) as pipe:
        for shard in range(s.stream_shards):
            pipe.pfcount(*[keyspace.dau(shard, d.isoformat()) for d in days])
        counts = await pipe.execute()
    return int(sum(counts))


async def rolling_uniques(r: aredis.Redis, s: Settings, days: list[date], window: int) -> list[int]:
    """For each day, villages active in the ``window`` days ending that day (WAU: 7, MAU: 30)."""
    async with r.pipeline(transaction=False) as pipe:
        for d in days:
            for shard in range(s.stream_shards):
                pipe.pfcount(*[keyspace.dau(shard, (d - timedelta(days=i)).isoformat()) for i in range(window)])
        counts = await pipe.execute()
    n = s.stream_shards
    return [int(sum(counts[i * n : (i + 1) * n])) for i in range(len(days))]


async def counters_per_day(r: aredis.Redis, s: Settings, days: list[date]) -> list[dict[str, int]]:
    """Every counter field (``<event>`` and ``<event>@<HH>``) of each day, summed over the shards."""
    async with r.pipeline(transaction=False) as pipe:
        for d in days:
            for shard in range(s.stream_shards):
                pipe.hgetall(keyspace.counts(shard, d.isoformat()))
        hashes = await pipe.execute()
    n = s.stream_shards
    out: list[dict[str, int]] = []
    for i in range(len(days)):
        merged: dict[str, int] = {}
        for h in hashes[i * n : (i + 1) * n]:
            for k, v in h.items():
                field = k.decode() if isinstance(k, bytes) else k
                merged[field] = merged.get(field, 0) + int(v)
        out.append(merged)
    return out


async def sketches_per_day(r: aredis.Redis, s: Settings, days: list[date]) -> list[Sketch]:
    async with r.pipeline(transaction=False) as pipe:
        for d in days:
            for shard in range(s.stream_shards):
                pipe.hgetall(keyspace.session_sketch(shard, d.isoformat()))
        hashes = await pipe.execute()
    n = s.stream_shards
    out = []
    for i in range(len(days)):
        sketch = Sketch()
        for h in hashes[i * n : (i + 1) * n]:
            sketch.merge(h)
        out.append(sketch)
    return out


def sketch_value(sketch: Sketch, metric: str) -> float:
    if metric == "avg":
        ms = sketch.average_ms()
    else:
        ms = sketch.quantile_ms(0.5 if metric == "p50" else 0.95)
    return round(ms / 1000, 3)
