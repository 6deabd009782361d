"""The ``sum`` kind: a numeric payload field summed exactly as integers at the KPI's scale.

A sum KPI's hash (``keyspace.kpi``) holds ``sum`` (the scaled total, any size: HINCRBY) and ``n``
(the events summed); encoded and parsed here only.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

import redis.asyncio as aredis

from kinds import ops, rollups
from kinds.base import Query, Row, summed_hashes
from schemas import keyspace
from schemas.catalog import StoredEvent
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


async def hashes(r: aredis.Redis, s: Settings, kpi: Kpi, days: list[date]) -> list[dict[str, int]]:
    """Each day's hash summed over the shards: closed days from their rollups, the others live."""
    async def live(days: list[date]) -> list[dict[str, int]]:
        return await summed_hashes(r, s, days, lambda shard, day: keyspace.kpi(shard, kpi.name, day))

    return await rollups.per_day(r, s, kpi.name, "h", days, live)


async def series(r: aredis.Redis, s: Settings, q: Query) -> list[Row]:
    return [{"date": d.isoformat(), "value": value(h, q.kpi.scale)}
            for d, h in zip(q.days, await hashes(r, s, q.kpi, q.days))]


async def total(r: aredis.Redis, s: Settings, q: Query, days: list[date]) -> int | float:
    return round(value({SUM: sum(h.get(SUM, 0) for h in await hashes(r, s, q.kpi, days))}, q.kpi.scale), 6)


# -- writes: ``I`` (HINCRBY of the scaled total, any size, and of the events summed), ``E`` ----
INT64 = 1 << 63


def adder(i: int, kpi: Kpi) -> ops.Adder:
    field, scale = kpi.field or "", kpi.scale

    def add_sum(day: ops.DayKpis, ev: StoredEvent) -> None:
        raw = ev.payload.get(field)
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            by = round(raw * scale)  # NaN / inf raise: the entry cannot be applied
            if not -INT64 <= by < INT64:
                raise OverflowError(f"{kpi.name}: {raw!r} x {scale} does not fit a counter")
            acc = day.sums.get(i)
            if acc is None:
                acc = day.sums[i] = [0, 0]
            acc[0] += by
            acc[1] += 1

    return add_sum


def emit(fx: ops.Effects, shard: int, day: str, kpis: tuple[Kpi, ...], acc: dict[int, list[int]],
         written: set[str]) -> None:
    for i, (total_, n) in acc.items():
        key = keyspace.kpi(shard, kpis[i].name, day)
        k = fx.key(key)
        fx.ops += ["I", k, SUM, ops.lua_int(total_), "I", k, N, ops.lua_int(n)]
        written.add(key)
