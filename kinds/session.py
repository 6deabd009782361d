"""The ``session`` kind: session durations (paired start/end) per UTC day of the start, a DDSketch.

The workers pair each ``session_start`` with its ``session_end`` (``apply.lua``'s session ops, fed
by ``aggregator/effects.py``) and add the duration to the start day's sketch hash per shard
(``keyspace.session_sketch``, buckets of ``schemas/sketch.py``). Sketches merge by adding bucket
counts. A closed day (``kinds.rollups.closed``) is read from its rollup, one compact value for all
shards (``keyspace.session_rollup``); the open days are merged live and the first read of a closed
day stores its rollup; a daily series reads each closed day's metric from ``kinds.rollups.per_day``
without decoding its sketch. Relative error of any quantile <= ``schemas.sketch.ALPHA``.
"""

from __future__ import annotations

from datetime import date

import redis.asyncio as aredis

from kinds import rollups
from kinds.base import Query, Row, per_day
from schemas import keyspace
from schemas.catalog import StoredEvent
from schemas.days import day_of_ms
from schemas.kpis import Kpi
from schemas.settings import Settings
from schemas.sketch import Sketch

METRICS = ("avg", "p50", "p95")
TOTAL_MEANS = "the metric over every session started in the range"


def total_means(kpi: Kpi) -> str:
    """What the range total means (the summary's ``total_means``)."""
    return TOTAL_MEANS


async def sketches_per_day(
    r: aredis.Redis, s: Settings, days: list[date], now_ms: int | None = None
) -> list[Sketch]:
    """Each day's sketch merged over the shards: closed days from their rollups (one MGET), the
    others (and closed days without a rollup yet) from the per-shard hashes, live; the missing
    rollups of closed days are written back."""
    kept = rollups.kept_since(s, now_ms)
    shut = [d for d in days if d >= kept and rollups.closed(s, d, now_ms)]
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


def value(sketch: Sketch, metric: str) -> float:
    """The metric in seconds: the average, or the p50 / p95 estimate."""
    if metric == "avg":
        ms = sketch.average_ms()
    else:
        ms = sketch.quantile_ms(0.5 if metric == "p50" else 0.95)
    return round(ms / 1000, 3)


BASE = "@sessions"  # the rollups of each closed day's metrics (besides its merged sketch)


async def series(r: aredis.Redis, s: Settings, q: Query) -> list[Row]:
    """Each day's metric: a closed day's from its rollup (one HMGET for the range, no sketch
    decoded), the open days' from their sketches."""
    async def live(days: list[date]) -> list[float]:
        return [value(sk, q.metric) for sk in await sketches_per_day(r, s, days)]

    values = await rollups.per_day(r, s, BASE, q.metric, q.days, live)
    return [{"date": d.isoformat(), "value": v} for d, v in zip(q.days, values)]


async def total(r: aredis.Redis, s: Settings, q: Query, days: list[date]) -> float:
    merged = Sketch()
    for sk in await sketches_per_day(r, s, days):
        merged.absorb(sk)
    return value(merged, q.metric)


# -- writes ------------------------------------------------------------------------------------
# The workers pair online: ``apply.lua``'s S (a start), F (an end) and B (both in one batch) ops
# keep each open session's start in a state key (``keyspace.session_state``) and add the
# duration to the start day's sketch when the end arrives (``aggregator/effects.py`` emits them).
# The backfill sees the whole retained stream at once and pairs here, in memory, with the same
# rule: an end pairs with its session's start (or, through ``session_alt``, the start it names);
# the duration, never negative, goes to the start's day. Its ``D`` ops add the durations.
class Pairing:
    """Sessions of a stream read in order: starts and ends by session id."""

    def __init__(self) -> None:
        self.starts: dict[str, int] = {}
        self.ends: dict[str, int] = {}

    def add(self, ev: StoredEvent) -> None:
        if ev.session is None:
            return
        if ev.name == "session_start":
            self.starts[ev.session] = ev.ts
        elif ev.name == "session_end":
            self.ends[ev.session] = ev.ts
            if ev.session_alt:
                self.ends.setdefault(ev.session_alt, ev.ts)

    def durations(self, days: set[str]) -> list[tuple[str, int]]:
        """(start's day, duration ms) of every paired session that started on one of ``days``."""
        out = []
        for sid, start in self.starts.items():
            end = self.ends.get(sid)
            if end is not None and (day := day_of_ms(start)) in days:
                out.append((day, max(0, end - start)))
        return out


def duration_ops(shard: int, durations: list[tuple[str, int]]) -> tuple[list[str], list[object]]:
    """The KEYS (after the stream and stats the script expects first) and ``D`` ops that add
    ``durations`` to their days' sketches on ``shard``."""
    keys = [keyspace.stream(shard), keyspace.shard_stats(shard)]
    index: dict[str, int] = {}
    ops_: list[object] = []
    for day, ms in durations:
        sketch = keyspace.session_sketch(shard, day)
        if sketch not in index:
            keys.append(sketch)
            index[sketch] = len(keys)
        ops_ += ["D", index[sketch], ms]
    return keys, ops_
