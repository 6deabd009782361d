"""Reading KPIs: merge the per-shard aggregates of each UTC day (one round trip per query).

Every multi-key command names keys of one shard only (one hash tag: one cluster slot); the
shards are merged here. PFCOUNT goes through ``execute_command`` because redis-py's cluster
pipeline refuses its ``pfcount`` method outright, even for keys of one slot."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import redis.asyncio as aredis

from schemas import rollups
from schemas import keyspace
from schemas.days import days_between
from schemas.settings import Settings
from schemas.sketch import Sketch

Series = list[dict[str, object]]


async def per_day(
    r: aredis.Redis, s: Settings, days: list[date], command: Callable[[Any, int, date], Any]
) -> list[list[Any]]:
    """Run ``command(pipe, shard, day)`` for every day and shard in one round trip; the replies
    grouped per day (one per shard, in shard order)."""
    async with r.pipeline(transaction=False) as pipe:
        for d in days:
            for shard in range(s.stream_shards):
                command(pipe, shard, d)
        replies = await pipe.execute()
    n = s.stream_shards
    return [replies[i * n : (i + 1) * n] for i in range(len(days))]


async def summed_hashes(
    r: aredis.Redis, s: Settings, days: list[date], key: Callable[[int, str], str]
) -> list[dict[str, int]]:
    """Each day's hash ``key(shard, day)``, its fields summed over the shards."""
    out: list[dict[str, int]] = []
    for hashes in await per_day(r, s, days, lambda p, shard, d: p.hgetall(key(shard, d.isoformat()))):
        merged: dict[str, int] = {}
        for h in hashes:
            for k, v in h.items():
                field = k.decode() if isinstance(k, bytes) else k
                merged[field] = merged.get(field, 0) + int(v)
        out.append(merged)
    return out


async def daily_uniques(r: aredis.Redis, s: Settings, start: date, end: date) -> Series:
    days = days_between(start, end)
    counts = await per_day(r, s, days, lambda p, shard, d: p.execute_command("PFCOUNT", keyspace.dau(shard, d.isoformat())))
    # villages are partitioned by shard, so the shards' sets are disjoint and their counts add
    return [{"date": d.isoformat(), "value": sum(c)} for d, c in zip(days, counts)]


async def daily_count(r: aredis.Redis, s: Settings, event_name: str, start: date, end: date) -> Series:
    days = days_between(start, end)
    values = await per_day(
        r, s, days, lambda p, shard, d: p.hget(keyspace.counts(shard, d.isoformat()), event_name)
    )
    return [{"date": d.isoformat(), "value": sum(int(v or 0) for v in vs)} for d, vs in zip(days, values)]


async def session_duration(
    r: aredis.Redis, s: Settings, metric: str, start: date, end: date
) -> Series:
    days = days_between(start, end)
    sketches = await sketches_per_day(r, s, days)
    return [{"date": d.isoformat(), "value": sketch_value(sk, metric)} for d, sk in zip(days, sketches)]


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
            pipe.execute_command("PFCOUNT", *[keyspace.dau(shard, d.isoformat()) for d in days])
        counts = await pipe.execute()
    return int(sum(counts))


async def rolling_uniques(r: aredis.Redis, s: Settings, days: list[date], window: int) -> list[int]:
    """For each day, villages active in the ``window`` days ending that day (WAU: 7, MAU: 30)."""
    counts = await per_day(r, s, days, lambda p, shard, d: p.execute_command(
        "PFCOUNT", *[keyspace.dau(shard, (d - timedelta(days=i)).isoformat()) for i in range(window)]))
    return [int(sum(c)) for c in counts]


async def counters_per_day(r: aredis.Redis, s: Settings, days: list[date]) -> list[dict[str, int]]:
    """Every counter field (``<event>`` and ``<event>@<HH>``) of each day, summed over the shards."""
    return await summed_hashes(r, s, days, keyspace.counts)


async def sketches_per_day(
    r: aredis.Redis, s: Settings, days: list[date], now_ms: int | None = None
) -> list[Sketch]:
    """Each day's sketch merged over the shards: closed days from their rollups (one MGET), the
    others (and closed days without a rollup yet) from the per-shard hashes, live; the missing
    rollups of closed days are written back."""
    shut = [d for d in days if rollups.closed(s, d, now_ms)]
    stored = dict(zip(shut, await r.mget([keyspace.session_rollup(d.isoformat()) for d in shut]))) if shut else {}
    out: dict[date, Sketch] = {}
    for d, blob in stored.items():
        if blob:  # neither missing nor rollups.STALE
            sk = out[d] = Sketch()
            sk.absorb_encoded(blob)
    live = [d for d in days if d not in out]
    if live:
        for d, hashes in zip(live, await per_day(
            r, s, live, lambda p, shard, d: p.hgetall(keyspace.session_sketch(shard, d.isoformat()))
        )):
            sk = out[d] = Sketch()
            for h in hashes:
                sk.merge(h)
        fill = [d for d in live if d in stored and stored[d] is None]
        if fill:
            async with r.pipeline(transaction=False) as pipe:
                for d in fill:
                    pipe.set(keyspace.session_rollup(d.isoformat()), out[d].encode(),
                             ex=rollups.ttl_seconds(s), nx=True)
                await pipe.execute()
    return [out[d] for d in days]


def sketch_value(sketch: Sketch, metric: str) -> float:
    if metric == "avg":
        ms = sketch.average_ms()
    else:
        ms = sketch.quantile_ms(0.5 if metric == "p50" else 0.95)
    return round(ms / 1000, 3)
