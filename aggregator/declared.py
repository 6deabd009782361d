"""The declared KPIs that need an aggregate of their own, indexed for the worker's hot loop.

The catalog is compiled once (``index``) into, per event name, the adders of the KPIs that match
that name (each kind's ``adder``: ``kinds.count``, ``uniques``, ``sum``, ``top``), so an event
visits only its own KPIs. ``emit`` turns a batch's per-day accumulators (``kinds.ops.DayKpis``)
into ``apply.lua`` ops through each kind's ``emit``, then one ``E`` (expiry) per key written.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import kinds
from kinds import count, sum as sum_kind, top, uniques
from kinds.ops import Adder, DayKpis, Effects
from schemas.kpis import Kpi

__all__ = ["DayKpis", "KpiIndex", "index"]


class KpiIndex:
    """The declared KPIs with an aggregate of their own, indexed by the event names they match.

    Counts broken down by built-in dimensions only need no per-event work (``kinds.count.wide``):
    they are derived from the plan's base counters at emit time; ``wide`` lists them.
    """

    def __init__(self, kpis: Iterable[Kpi]) -> None:
        self.kpis = tuple(k for k in kpis if k.own_aggregate)
        self.wide = tuple((i, k) for i, k in enumerate(self.kpis) if k.kind == "count" and count.wide(k))
        wide = {i for i, _ in self.wide}
        self._adders = [(k, kinds.module(k.kind).adder(i, k)) for i, k in enumerate(self.kpis) if i not in wide]
        self.by_name: dict[str, tuple[Adder, ...]] = {}

    def adders(self, name: str) -> tuple[Adder, ...]:
        found = self.by_name.get(name)
        if found is None:
            found = self.by_name[name] = tuple(a for k, a in self._adders if k.matches(name))
        return found

    def emit(
        self, fx: Effects, shard: int,
        days: Iterable[tuple[str, DayKpis, dict[tuple[str, int, str, str], int]]], chunk: int,
    ) -> None:
        """The ops of every day's accumulators, then one EXPIRE per key (not the all-time tables).

        ``days``: (day, its declared accumulators, its base counters by (event name, hour,
        platform, app version)).
        """
        written: set[str] = set()
        persistent: set[str] = set()
        kpis = self.kpis
        for day, acc, base in days:
            count.emit(fx, shard, day, kpis, self.wide, acc.counts, base, written)
            sum_kind.emit(fx, shard, day, kpis, acc.sums, written)
            uniques.emit(fx, shard, day, kpis, acc.uniques, chunk, written)
            top.emit(fx, shard, day, kpis, acc.top, written, persistent)
        for key in written - persistent:
            fx.ops += ["E", fx.key(key)]


@functools.lru_cache(maxsize=32)
def index(kpis: tuple[Kpi, ...]) -> KpiIndex:
    """The compiled index of a KPI catalog (compiled once per catalog)."""
    return KpiIndex(kpis)
