"""The ``retention`` kind: of the actors active on UTC day D, the share active again on day D+N.

Read from the daily actor HyperLogLogs the workers already keep (``keyspace.dau``), so it needs
no aggregate of its own: per shard, ``|A ∩ B| = |A| + |B| - |A ∪ B|`` with ``A`` the actors of D,
``B`` those of D+N and ``|A ∪ B|`` one multi-key PFCOUNT (both keys share the shard's hash tag,
so every command stays on one cluster slot). Actors are partitioned by shard, so the shards'
intersections and cohorts add up. One pipeline (one round trip) reads a whole range.

The value of day D is ``|A ∩ B| / |A|``, clamped to 0..1 and rounded to 4 decimals; ``None``
while D+N is still to come (or has no actors on D).

Error: each PFCOUNT has a standard error of 1.04/sqrt(16384) = 0.81 % (Redis's HLL; far less in
its sparse encoding below a few thousand members). Treating the three estimates' errors as
independent, the intersection's standard error is ``0.0081 * sqrt(|A|² + |B|² + |A ∪ B|²)``,
so the share's is that divided by ``|A|``: at equal days with 40 % retained, about 1.7
percentage points at any size. ``error_bound`` gives three of those standard errors; tests hold
the answers to it against exact ground truth at 1k, 10k and 100k actors.
"""

from __future__ import annotations

import math
from datetime import date, timedelta

import redis.asyncio as aredis

from kinds import rollups, uniques
from kinds.base import Query, Row
from schemas import keyspace
from schemas.kpis import Kpi
from schemas.settings import Settings

TOTAL_MEANS = "actors retained over actors in every cohort of the range whose day D+N has come"


def total_means(kpi: Kpi) -> str:
    """What the range total means (the summary's ``total_means``)."""
    return TOTAL_MEANS
AFTER = (1, 7, 30)  # the offsets the dashboard's cohort table shows
MAX_AFTER = 365
HLL_STD_ERROR = 1.04 / math.sqrt(16384)


def error_bound(cohort: float, again: float, union: float) -> float:
    """Three standard errors of the share, from the (estimated) sizes |A|, |B| and |A ∪ B|."""
    if cohort <= 0:
        return 1.0
    return 3 * HLL_STD_ERROR * math.sqrt(cohort**2 + again**2 + union**2) / cohort


def share(parts: list[tuple[int, int, int]]) -> tuple[float | None, int]:
    """(share retained, cohort size) from each shard's (|A|, |B|, |A ∪ B|)."""
    cohort = sum(a for a, _, _ in parts)
    if cohort == 0:
        return None, 0
    kept = sum(max(0, a + b - u) for a, b, u in parts)
    return round(min(1.0, kept / cohort), 4), cohort


async def counts(
    r: aredis.Redis, s: Settings, days: list[date], after: int, today: date
) -> list[list[tuple[int, int, int]] | None]:
    """Per day D, each shard's (|A_D|, |A_D+N|, |A_D ∪ A_D+N|); None while D+N is to come.
    Once D+N is closed, from the rollups (``kinds.rollups.per_day``)."""
    gap = timedelta(days=after)
    return await rollups.per_day(r, s, uniques.BASE, f"r{after}", days,
                                 lambda days: _counts(r, s, days, after, today),
                                 shut=lambda d: rollups.closed(s, d + gap))


async def _counts(
    r: aredis.Redis, s: Settings, days: list[date], after: int, today: date
) -> list[list[tuple[int, int, int]] | None]:
    due = [d for d in days if d + timedelta(days=after) <= today]
    async with r.pipeline(transaction=False) as pipe:
        for d in due:
            later = (d + timedelta(days=after)).isoformat()
            for shard in range(s.stream_shards):
                a, b = keyspace.dau(shard, d.isoformat()), keyspace.dau(shard, later)
                pipe.execute_command("PFCOUNT", a)  # cluster pipelines refuse pfcount()
                pipe.execute_command("PFCOUNT", b)
                pipe.execute_command("PFCOUNT", a, b)  # same shard: one slot
        replies = await pipe.execute()
    n = 3 * s.stream_shards
    by_day: dict[date, list[tuple[int, int, int]]] = {}
    for i, d in enumerate(due):
        chunk = [int(v) for v in replies[i * n : (i + 1) * n]]
        by_day[d] = [tuple(chunk[j : j + 3]) for j in range(0, n, 3)]  # type: ignore[misc]
    return [by_day.get(d) for d in days]


async def series(r: aredis.Redis, s: Settings, q: Query) -> list[Row]:
    """``[{"date", "value"}]``: the share of each day's actors active again ``q.after`` days later."""
    out: list[Row] = []
    for d, parts in zip(q.days, await counts(r, s, q.days, q.after, q.now())):
        out.append({"date": d.isoformat(), "value": None if parts is None else share(parts)[0]})
    return out


async def total(r: aredis.Redis, s: Settings, q: Query, days: list[date]) -> float | None:
    """The range's retention: actors retained over actors in every due cohort (cohort-weighted)."""
    every = [p for parts in await counts(r, s, days, q.after, q.now()) if parts for p in parts]
    return share(every)[0]
