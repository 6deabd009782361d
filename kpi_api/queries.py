"""Reading KPIs: merge the per-shard aggregates of each UTC day (one round trip per query)."""

from __future__ import annotations

from datetime import date

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
