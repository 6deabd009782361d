"""The ``total_actors`` and ``new_actors`` kinds: actors ever seen up to each day, and first seen on it.

Read from the daily actor HyperLogLogs the workers already keep (``keyspace.dau``), like
``kinds.retention``, so they cost no aggregate of their own and no memory per actor beyond the
daily HLLs (at most 12 KiB per shard and day, whatever the number of actors). Per shard, the
actors seen up to day D are the union of every daily HLL from the horizon to D, kept as a running
PFMERGE in a scratch key (all keys share the shard's hash tag, so every command stays on one
cluster slot); shards partition the actors, so the shards' counts add up. One pipeline (one round
trip) reads a whole range.

- ``total_actors`` on D: ``|A_h ∪ … ∪ A_D|``, the distinct actors of the days from the horizon to D.
- ``new_actors`` on D: ``total(D) - total(D-1)``, the actors whose first day (since the horizon) is D.

The horizon is ``METRICS_RETENTION_DAYS`` before today: daily HLLs older than that have expired,
so "ever" means "within the metrics retention". Actors are pseudonyms, which rotate with the salt
epoch (``SALT_ROTATION_DAYS``): an actor active in two epochs is two pseudonyms, so it counts twice
in ``total_actors`` and is new again on its first day of the later epoch.

Error: a union's PFCOUNT has a standard error of 0.81 % of the union (Redis's HLL, 16384
registers; PFMERGE merges into dense registers, so even small unions are estimates, in
practice within a few actors below a thousand). ``new_actors`` is a difference of two such estimates, so its error is of the order of
the total's, not of the day's new actors: ``error_bound`` states three standard errors of each.
"""

from __future__ import annotations

import math
import uuid
from datetime import date, timedelta

import redis.asyncio as aredis

from kinds import rollups, uniques
from kinds.base import Query, Row
from schemas import keyspace
from schemas.days import days_between
from schemas.kpis import Kpi
from schemas.settings import Settings

TOTAL, NEW = "total_actors", "new_actors"
KINDS = (TOTAL, NEW)
TOTAL_MEANS = {TOTAL: "the value on the range's last day: distinct actors seen up to it",
               NEW: "actors first seen within the range"}


def total_means(kpi: Kpi) -> str:
    """What the range total means (the summary's ``total_means``)."""
    return TOTAL_MEANS[kpi.kind]
HLL_STD_ERROR = 1.04 / math.sqrt(16384)
SCRATCH_SECONDS = 60


def error_bound(kind: str, total: float, previous: float = 0.0) -> float:
    """Three standard errors of a day's value, from the (estimated) totals of D and D-1."""
    if kind == TOTAL:
        return 3 * HLL_STD_ERROR * total
    return 3 * HLL_STD_ERROR * math.sqrt(total**2 + previous**2)


def horizon(s: Settings, today: date) -> date:
    """The first day whose daily HLLs may still be kept."""
    return today - timedelta(days=s.metrics_retention_days)


async def totals(r: aredis.Redis, s: Settings, days: list[date], today: date) -> list[int]:
    """Per day D, the distinct actors of every day from the horizon to D (0 before the horizon).

    Per shard, a running union in a scratch key on the shard's slot: one PFMERGE of the days from
    the horizon to the first day asked, then one PFMERGE of the days since the previous one per
    day asked, each followed by a PFCOUNT. A year of history is merged once per shard, not once
    per day of the range (a 90-day range read 90 x 365 daily HLLs per shard before).
    """
    first = horizon(s, today)
    # a day's total depends on the horizon too, which moves every day: rolled up per horizon, in
    # a hash of its own that expires two days after its last write (tomorrow reads another one)
    return await rollups.per_day(r, s, f"{uniques.BASE}:since:{first.isoformat()}", "t", days,
                                 lambda days: _totals(r, s, days, first), ttl=2 * 86400)


async def _totals(r: aredis.Redis, s: Settings, days: list[date], first: date) -> list[int]:
    due = sorted({d for d in days if d >= first})
    if not due:
        return [0] * len(days)
    span = [d.isoformat() for d in days_between(first, due[-1])]
    token = uuid.uuid4().hex
    cuts = [(d - first).days + 1 for d in due]
    async with r.pipeline(transaction=False) as pipe:
        for shard in range(s.stream_shards):
            scratch = keyspace.shard_scratch(shard, token)
            prev = 0
            for cut in cuts:
                # execute_command: cluster pipelines refuse pfmerge() and pfcount()
                pipe.execute_command("PFMERGE", scratch, *(keyspace.dau(shard, day) for day in span[prev:cut]))
                if prev == 0:
                    pipe.expire(scratch, SCRATCH_SECONDS)
                pipe.execute_command("PFCOUNT", scratch)
                prev = cut
            pipe.delete(scratch)
        replies = await pipe.execute()
    per_shard = 2 * len(cuts) + 2  # PFMERGE + PFCOUNT per day, one EXPIRE, one DEL
    by_day = {d: 0 for d in due}
    for shard in range(s.stream_shards):
        counts = replies[shard * per_shard : (shard + 1) * per_shard]
        counts = [counts[2]] + counts[4:-1:2]  # the PFCOUNT replies, in day order
        for d, v in zip(due, counts):
            by_day[d] += int(v)
    return [by_day.get(d, 0) for d in days]


async def series(r: aredis.Redis, s: Settings, q: Query) -> list[Row]:
    """``[{"date", "value"}]``: actors seen up to each day (``total_actors``) or first seen on it."""
    kind, days, today = q.kpi.kind, q.days, q.now()
    if not days:
        return []
    if kind == TOTAL:
        values = await totals(r, s, days, today)
    else:
        cumulative = await totals(r, s, [days[0] - timedelta(days=1), *days], today)
        values = [max(0, b - a) for a, b in zip(cumulative, cumulative[1:])]
    return [{"date": d.isoformat(), "value": v} for d, v in zip(days, values)]


async def total(r: aredis.Redis, s: Settings, q: Query, days: list[date]) -> int:
    """The range's value: the total on its last day, or the actors first seen within it."""
    kind, today = q.kpi.kind, q.now()
    if not days:
        return 0
    if kind == TOTAL:
        return (await totals(r, s, [days[-1]], today))[0]
    before, last = await totals(r, s, [days[0] - timedelta(days=1), days[-1]], today)
    return max(0, last - before)
