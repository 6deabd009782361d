"""Reading the declared KPIs' own aggregates (uniques of a field, breakdowns, sums, top-N).

Base-aggregate KPIs (actor uniques, plain counts, session durations) are read by ``queries``;
this module reads the keys ``aggregator/declared.py`` writes.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import redis
import redis.asyncio as aredis

from kinds import count, sum as sum_kind
from kpi_api import queries
from schemas import keyspace
from schemas.kpis import Kpi
from schemas.settings import Settings

Row = dict[str, Any]


async def union_count(r: aredis.Redis, keys: list[str]) -> int:
    """Distinct members across HLLs of different shards (values are not partitioned by shard).

    One multi-key PFCOUNT on a single node; on a cluster, where the shards' keys live in
    different slots, the HLLs are copied under one temporary hash tag and counted there.
    """
    try:
        return int(await r.pfcount(*keys))
    except redis.exceptions.RedisClusterException:
        pass  # the cluster client refuses keys of several slots before sending
    except redis.ResponseError as exc:
        if "CROSSSLOT" not in str(exc):
            raise
    tag = "{tmp-%s}" % uuid.uuid4().hex
    temp = [f"{keyspace.PREFIX}:{tag}:{i}" for i in range(len(keys))]
    blobs = [await r.get(k) for k in keys]
    try:
        for name, blob in zip(temp, blobs):
            if blob is not None:
                await r.set(name, blob, ex=60)
        present = [name for name, blob in zip(temp, blobs) if blob is not None]
        return int(await r.pfcount(*present)) if present else 0
    finally:
        await r.delete(*temp)


async def uniques(r: aredis.Redis, s: Settings, kpi: Kpi, days: list[date]) -> list[Row]:
    out = []
    for d in days:
        keys = [keyspace.kpi(shard, kpi.name, d.isoformat()) for shard in range(s.stream_shards)]
        out.append({"date": d.isoformat(), "value": await union_count(r, keys)})
    return out


async def uniques_total(r: aredis.Redis, s: Settings, kpi: Kpi, days: list[date]) -> int:
    keys = [keyspace.kpi(shard, kpi.name, d.isoformat()) for d in days for shard in range(s.stream_shards)]
    return await union_count(r, keys)


async def _hashes(r: aredis.Redis, s: Settings, kpi: Kpi, days: list[date]) -> list[dict[str, int]]:
    return await queries.summed_hashes(r, s, days, lambda shard, day: keyspace.kpi(shard, kpi.name, day))


async def breakdown(
    r: aredis.Redis, s: Settings, kpi: Kpi, days: list[date], dimension: str, limit: int | None
) -> list[Row]:
    """Rows ``{date, <dimension>, value}`` for a count KPI declared with that dimension."""
    per_day = [count.by_dimension(h, dimension) for h in await _hashes(r, s, kpi, days)]
    totals: dict[str, int] = {}
    for h in per_day:
        for g, v in h.items():
            totals[g] = totals.get(g, 0) + v
    groups = sorted(totals, key=lambda g: (-totals[g], g))
    if limit is not None:
        groups = groups[:limit]
    return [
        {"date": d.isoformat(), dimension: g, "value": h.get(g, 0)}
        for d, h in zip(days, per_day)
        for g in sorted(groups)
    ]


async def sums(r: aredis.Redis, s: Settings, kpi: Kpi, days: list[date]) -> list[Row]:
    per_day = await _hashes(r, s, kpi, days)
    return [
        {"date": d.isoformat(), "value": sum_kind.value(h, kpi.scale)}
        for d, h in zip(days, per_day)
    ]


async def top(
    r: aredis.Redis, s: Settings, kpi: Kpi, days: list[date] | None, limit: int | None
) -> list[Row]:
    """``[{"key", "value"}]`` by value, over ``days`` (or all time when ``days`` is None)."""
    async with r.pipeline(transaction=False) as pipe:
        for shard in range(s.stream_shards):
            if days is None:
                pipe.zrange(keyspace.kpi_all_time(shard, kpi.name), 0, -1, withscores=True)
            else:
                for d in days:
                    pipe.zrange(keyspace.kpi(shard, kpi.name, d.isoformat()), 0, -1, withscores=True)
        replies = await pipe.execute()
    totals: dict[str, int] = {}
    for reply in replies:
        for member, score in reply:
            key = member.decode()
            totals[key] = totals.get(key, 0) + int(score)
    ordered = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))
    if limit is not None:
        ordered = ordered[:limit]
    return [{"key": k, "value": v} for k, v in ordered]


async def top_series(r: aredis.Redis, s: Settings, kpi: Kpi, days: list[date]) -> list[Row]:
    """Per day, the total counted into the top-N table (a time series for charts): one round trip."""
    per_day = await queries.per_day(
        r, s, days,
        lambda p, shard, d: p.zrange(keyspace.kpi(shard, kpi.name, d.isoformat()), 0, -1, withscores=True),
    )
    return [
        {"date": d.isoformat(), "value": sum(int(score) for reply in replies for _, score in reply)}
        for d, replies in zip(days, per_day)
    ]


async def read(
    r: aredis.Redis,
    s: Settings,
    kpi: Kpi,
    days: list[date],
    *,
    group_by: str | None = None,
    limit: int | None = None,
    metric: str = "avg",
) -> list[Row]:
    """Any declared KPI as a daily series (or a breakdown with ``group_by``)."""
    if kpi.kind == "uniques":
        if kpi.field:
            return await uniques(r, s, kpi, days)
        return await queries.daily_uniques(r, s, days[0], days[-1])
    if kpi.kind == "session":
        return await queries.session_duration(r, s, metric, days[0], days[-1])
    if kpi.kind == "sum":
        return await sums(r, s, kpi, days)
    if kpi.kind == "top":
        return await top_series(r, s, kpi, days)
    if group_by is not None:
        if group_by not in kpi.dimensions:
            raise ValueError(f"{kpi.name} has no dimension {group_by!r}")
        return await breakdown(r, s, kpi, days, group_by, limit)
    counters = await queries.counters_per_day(r, s, days)
    return [
        {"date": d.isoformat(),
         "value": sum(v for f, v in count.totals(c).items() if kpi.matches(f))}
        for d, c in zip(days, counters)
    ]
