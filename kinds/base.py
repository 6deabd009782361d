"""What every kind's reads share: the query, one-round-trip reads per shard and day, k-suppression.

A read is one ``Query`` (the KPI's declaration, the range and the options the API parsed); each
kind module answers it with ``series`` (rows ``{"date", "value"}``, plus ``hour`` or the breakdown's
dimension) and ``total`` (the range's one value, whose meaning the kind states in ``TOTAL_MEANS``).

Every multi-key command names keys of one shard only (one hash tag: one cluster slot); the shards
are merged here. PFCOUNT goes through ``execute_command`` because redis-py's cluster pipeline
refuses its ``pfcount`` method outright, even for keys of one slot.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any

import redis
import redis.asyncio as aredis

from schemas import keyspace
from schemas.days import days_between
from schemas.kpis import Kpi
from schemas.settings import Settings

Row = dict[str, Any]


@dataclass(frozen=True)
class Query:
    kpi: Kpi
    start: date
    end: date
    granularity: str = "day"
    group_by: str | None = None
    limit: int | None = None
    metric: str = "avg"  # session KPIs: avg | p50 | p95
    event_name: str | None = None  # counts of every event: only this one
    after: int = 1  # retention: the day offset N
    today: date | None = None  # retention, first seen: the days after it are still to come
    offset: int = 0  # top tables: the rows skipped (paging)

    @property
    def days(self) -> list[date]:
        return days_between(self.start, self.end)

    @property
    def last_day(self) -> date:
        """The last day the answer reads: a retention's D+N, else the range's end."""
        return self.end + timedelta(days=self.after) if self.kpi.kind == "retention" else self.end

    def now(self) -> date:
        return self.today or datetime.now(timezone.utc).date()

    def cache_key(self, what: str) -> tuple[Any, ...]:
        dated = self.kpi.kind in ("retention", "total_actors", "new_actors")
        return (what, self.kpi.name, self.start, self.end, self.granularity, self.group_by,
                self.limit, self.offset, self.metric if self.kpi.kind == "session" else None,
                self.event_name, (self.after, self.now()) if dated else None)


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


def merge_hashes(hashes: list[dict[Any, Any]]) -> dict[str, int]:
    """Hashes of integer fields (one per shard), their fields summed."""
    merged: dict[str, int] = {}
    for h in hashes:
        for k, v in h.items():
            field = k.decode() if isinstance(k, bytes) else k
            merged[field] = merged.get(field, 0) + int(v)
    return merged


async def summed_hashes(
    r: aredis.Redis, s: Settings, days: list[date], key: Callable[[int, str], str]
) -> list[dict[str, int]]:
    """Each day's hash ``key(shard, day)``, its fields summed over the shards."""
    replies = await per_day(r, s, days, lambda p, shard, d: p.hgetall(key(shard, d.isoformat())))
    return [merge_hashes(hashes) for hashes in replies]


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
    temp = [keyspace.scratch(tag, i) for i in range(len(keys))]
    blobs = [await r.get(k) for k in keys]
    try:
        for name, blob in zip(temp, blobs):
            if blob is not None:
                await r.set(name, blob, ex=60)
        present = [name for name, blob in zip(temp, blobs) if blob is not None]
        return int(await r.pfcount(*present)) if present else 0
    finally:
        await r.delete(*temp)


def suppress(rows: list[Row], actors: list[int], k: int) -> list[Row]:
    """The minimum aggregation threshold: no breakdown cell may single out fewer than k actors.

    A cell is suppressed (``"value": null, "suppressed": true``) when the number of actors behind
    it (``actors``, one per row) is known to be between 1 and k - 1. Where a cell's own unique
    count is not kept, the caller passes an upper bound (the day's active actors), which can only
    suppress less than an exact count would. Day totals are not breakdowns and keep their
    numeric contract.
    """
    if k <= 1:
        return rows
    out = []
    for row, n in zip(rows, actors):
        if 0 < n < k:
            row = {**row, "value": None, "suppressed": True}
        out.append(row)
    return out


def day_bounds(rows: list[Row], days: list[date], actors: list[int]) -> list[int]:
    """Each row's day's active actors: the upper bound on the actors behind any cell of that day."""
    by_day = {d.isoformat(): v for d, v in zip(days, actors)}
    return [by_day[row["date"]] for row in rows]
