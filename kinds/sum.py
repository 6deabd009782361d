"""The ``sum`` kind: a numeric payload field summed exactly as integers at the KPI's scale.

A sum KPI's hash (``keyspace.kpi``) holds ``sum`` (the scaled total, any size: HINCRBY) and ``n``
(the events summed); encoded and parsed here only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import redis.asyncio as aredis

from kinds.base import Query, Row, summed_hashes
from schemas import keyspace
from schemas.kpis import Kpi
from schemas.settings import Settings

SUM = "sum"
N = "n"


def value(fields: Mapping[str, int], scale: int) -> int | float:
    """The day's (or range's) total in the field's own unit."""
    total = fields.get(SUM, 0)
    return total if scale == 1 else total / scale


TOTAL_MEANS = "the sum over the range"


def total_means(kpi: Kpi) -> str:
    """What the range total means (the summary's ``total_means``)."""
    return TOTAL_MEANS


async def series(r: aredis.Redis, s: Settings, q: Query) -> list[Row]:
    hashes = await summed_hashes(r, s, q.days, lambda shard, day: keyspace.kpi(shard, q.kpi.name, day))
    return [{"date": d.isoformat(), "value": value(h, q.kpi.scale)} for d, h in zip(q.days, hashes)]


async def total(r: aredis.Redis, s: Settings, q: Query, days: list[date]) -> int | float:
    hashes = await summed_hashes(r, s, days, lambda shard, day: keyspace.kpi(shard, q.kpi.name, day))
    return round(value({SUM: sum(h.get(SUM, 0) for h in hashes)}, q.kpi.scale), 6)
