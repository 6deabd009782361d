"""Closed-day rollups: one compact value per KPI and closed day, so a long range is one small read.

A day is closed once its end plus ``LATE_WINDOW_HOURS`` plus ``MAX_SESSION_HOURS`` has passed: no
ordinary event or session pairing can change its sketch any more. The first read of a closed day
merges its per-shard hashes and stores the merged sketch as one compact value
(``keyspace.session_rollup``); later reads of a range fetch all its closed days in one MGET
(one slot: shard 0's hash tag) and read only the open days live. Backfill and the history import
mark the rollups of the days they change stale (``forget``), and the KPI APIs' cached answers with
them (``keyspace.DATA_GENERATION``, followed by ``kpi_api/overrides.py``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

import msgspec
import redis
import redis.asyncio as aredis

from schemas import keyspace
from schemas.days import DAY_MS, EPOCH_DAY
from schemas.settings import Settings


def last_closed_day_number(s: Settings, now_ms: int) -> int:
    """The last closed day (days since the epoch): its end plus the late window plus the
    longest session has passed."""
    return (now_ms - (s.late_window_hours + s.max_session_hours) * 3_600_000) // DAY_MS - 1


def closed(s: Settings, day: date, now_ms: int | None = None) -> bool:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return (day - EPOCH_DAY).days <= last_closed_day_number(s, now)


def kept_since(s: Settings, now_ms: int | None = None) -> date:
    """The first day whose per-shard aggregates are surely still kept: a day's keys expire
    ``METRICS_RETENTION_DAYS`` after their last write (and the purge deletes the days before
    that horizon), so an older day is read live, never from a rollup that would outlive them
    (the setting may also be lowered at run time)."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return EPOCH_DAY + timedelta(days=now // DAY_MS - s.metrics_retention_days + 1)


def ttl_seconds(s: Settings) -> int:
    """Rollups expire with the retention of the hashes they merge."""
    return s.metrics_retention_days * 86400


# What ``forget`` leaves for a while instead of a rollup: reads go live and, as they write rollups
# with SET NX, a read that fetched the hashes before the change cannot store its stale merge.
STALE = b""
STALE_SECONDS = 60


def forget(client: redis.Redis, days: list[str]) -> None:
    """Mark the rollups of ``days`` stale (rebuilt from the hashes by a read after STALE_SECONDS),
    and bump the data generation so that every KPI API drops the answers it cached of them."""
    if days:
        pipe = client.pipeline(transaction=False)
        for d in days:
            pipe.set(keyspace.session_rollup(d), STALE, ex=STALE_SECONDS)
        pipe.incr(keyspace.DATA_GENERATION)
        pipe.execute()



# -- the other kinds' rollups: one hash per KPI ------------------------------------------------
# A value is stored with the data generation (``keyspace.DATA_GENERATION``) it was computed at;
# ``forget`` bumps the generation, so every value computed before a backfill or an import is
# ignored from then on (no stale mark needed: a read racing the change stores the old generation).
_ENCODE = msgspec.msgpack.Encoder().encode
_DECODE = msgspec.msgpack.Decoder().decode


def drop(client: redis.Redis) -> None:
    """Delete every KPI's rollup hash (the purge: days it deletes must not live on in a rollup);
    they are rebuilt by the next reads."""
    keys = list(client.scan_iter(match=keyspace.ROLLUPS, count=1000))
    for start in range(0, len(keys), 500):
        client.unlink(*keys[start : start + 500])
    client.incr(keyspace.DATA_GENERATION)


async def per_day(
    r: aredis.Redis, s: Settings, kpi: str, variant: str, days: list[date],
    compute: Callable[[list[date]], Awaitable[list[Any]]], shut: Callable[[date], bool] | None = None,
    ttl: int | None = None,
) -> list[Any]:
    """``compute(days)`` (one value per day, in order), with the closed days' values taken from
    and stored in the KPI's rollup hash. ``shut(day)``: whether a day's value can no longer change
    (default: the day is closed; a retention's D needs D+N closed). The hash expires ``ttl``
    seconds after its last write (default: the metrics retention)."""
    is_shut = shut or (lambda d: closed(s, d))
    kept = kept_since(s)
    done = [d for d in days if d >= kept and is_shut(d)]
    key = keyspace.rollup(kpi)
    found: dict[date, Any] = {}
    generation = 0
    if done:
        async with r.pipeline(transaction=False) as pipe:
            pipe.get(keyspace.DATA_GENERATION)
            pipe.hmget(key, [f"{variant}:{d.isoformat()}" for d in done])
            gen, blobs = await pipe.execute()
        generation = int(gen or 0)
        for d, blob in zip(done, blobs):
            if blob:
                at, value = _DECODE(blob)
                if at == generation:
                    found[d] = value
    missing = [d for d in days if d not in found]
    if missing:
        fresh = dict(zip(missing, await compute(missing)))
        store = {f"{variant}:{d.isoformat()}": _ENCODE([generation, fresh[d]]) for d in missing if d in done}
        if store:
            async with r.pipeline(transaction=False) as pipe:
                pipe.hset(key, mapping=store)
                pipe.expire(key, ttl or ttl_seconds(s))
                await pipe.execute()
        found.update(fresh)
    return [found[d] for d in days]
