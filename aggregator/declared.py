"""Effects of the declared KPIs that need an aggregate of their own (see ``schemas/kpis.py``).

The catalog is compiled once (``index``) into, per event name, the small functions of the KPIs
that match that name, so an event visits only its own KPIs. Each function adds the event's
contribution to the day's accumulator (``DayKpis``) in memory; ``emit`` turns a batch's
accumulators into ``apply.lua`` ops: PFADD for uniques of a field, HINCRBY for dimension counts
and scaled sums, ZINCRBY for top-N tables.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

from aggregator.ops import Effects, emit_counters, lua_int
from kinds import count, sum as sum_kind
from schemas import keyspace
from schemas.catalog import StoredEvent
from schemas.kpis import ACTOR_FIELDS as ACTORS
from schemas.kpis import Kpi

_BUILTIN = {"platform": "platform", "app_version": "app_version", "event_name": "name"}
INT64 = 1 << 63


def dimension_value(ev: StoredEvent, dim: str) -> str | None:
    if dim == "platform":
        return ev.platform
    if dim == "app_version":
        return ev.app_version
    if dim == "event_name":
        return ev.name
    if dim in ACTOR_FIELDS:
        return ACTOR_FIELDS[dim](ev)
    return _payload_value(ev.payload.get(dim))


# the envelope's second actor: a signed-in user, and an anonymous visitor, which is an
# anonymous id seen without a user (seed 002's two counts)
ACTOR_FIELDS: dict[str, Callable[[StoredEvent], str | None]] = dict(zip(ACTORS, (
    lambda ev: ev.user,
    lambda ev: ev.anonymous if ev.user is None else None,
)))


def _payload_value(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


class DayKpis:
    """One UTC day's declared-KPI contributions of a batch, by KPI position in the index."""

    __slots__ = ("counts", "sums", "top", "uniques")

    def __init__(self) -> None:
        self.counts: dict[tuple[int, Any], int] = {}  # (kpi, dimension value(s)) -> events
        self.uniques: dict[int, set[str]] = {}
        self.sums: dict[int, list[int]] = {}  # kpi -> [scaled sum, n]
        self.top: dict[tuple[int, str], int] = {}  # (kpi, member) -> events


Adder = Callable[[DayKpis, StoredEvent], None]


def _dims_getter(dims: tuple[str, ...]) -> Callable[[StoredEvent], Any]:
    """The event's dimension values: one value for one dimension, else a tuple (None = absent)."""
    if all(d in _BUILTIN for d in dims):
        return attrgetter(*(_BUILTIN[d] for d in dims))  # C; a tuple when there are several
    return lambda ev: tuple(dimension_value(ev, d) for d in dims)


def _adder(i: int, kpi: Kpi) -> Adder:
    if kpi.kind == "count" and len(kpi.dimensions) == 1 and kpi.dimensions[0] not in _BUILTIN:
        dim = kpi.dimensions[0]

        def add_payload_count(day: DayKpis, ev: StoredEvent) -> None:
            value = ev.payload.get(dim)
            if type(value) is not str:  # identifiers are strings: the rest is rare
                value = _payload_value(value)
            k = (i, value)
            day.counts[k] = day.counts.get(k, 0) + 1

        return add_payload_count
    if kpi.kind == "count":
        get = _dims_getter(kpi.dimensions)

        def add_count(day: DayKpis, ev: StoredEvent) -> None:
            k = (i, get(ev))
            day.counts[k] = day.counts.get(k, 0) + 1

        return add_count
    field = kpi.field or ""
    if kpi.kind == "uniques":

        def add_unique(day: DayKpis, ev: StoredEvent) -> None:
            value = dimension_value(ev, field)
            if value is not None:
                s = day.uniques.get(i)
                if s is None:
                    s = day.uniques[i] = set()
                s.add(value)

        return add_unique
    if kpi.kind == "sum":
        scale = kpi.scale

        def add_sum(day: DayKpis, ev: StoredEvent) -> None:
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

    builtin = field in _BUILTIN

    def add_top(day: DayKpis, ev: StoredEvent) -> None:  # kind == "top"
        member = ev.payload.get(field) if not builtin else None
        if type(member) is not str:  # identifiers are strings: the rest is rare
            member = dimension_value(ev, field)
        if member is not None:
            k = (i, member)
            day.top[k] = day.top.get(k, 0) + 1

    return add_top


class KpiIndex:
    """The declared KPIs with an aggregate of their own, indexed by the event names they match.

    Counts broken down by built-in dimensions only (event name, platform, app version) need no
    per-event work: they are derived from the plan's base counters, which are kept per (event
    name, hour, platform, app version); ``wide`` lists them. The others have an adder each.
    """

    def __init__(self, kpis: Iterable[Kpi]) -> None:
        self.kpis = tuple(k for k in kpis if k.own_aggregate)
        self.wide = tuple(
            (i, k) for i, k in enumerate(self.kpis)
            if k.kind == "count" and all(d in _BUILTIN for d in k.dimensions)
        )
        wide = {i for i, _ in self.wide}
        self._adders = [(k, _adder(i, k)) for i, k in enumerate(self.kpis) if i not in wide]
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
        """The ops of every day's accumulators (one HINCRBY per field, one EXPIRE per key).

        ``days``: (day, its declared accumulators, its base counters by (event name, hour,
        platform, app version)).
        """
        written: set[str] = set()
        persistent: set[str] = set()  # all-time tables: no TTL
        hincr: dict[tuple[str, str], int] = {}
        sums: dict[tuple[str, str], int] = {}  # scaled sums: any size, one HINCRBY each
        zincr: dict[tuple[str, str], int] = {}
        ops = fx.ops
        for day, acc, base in days:
            if self.wide:
                combos: dict[tuple[str, str, str], int] = {}
                for (name, _, platform, app_version), n in base.items():
                    c = (name, platform, app_version)
                    combos[c] = combos.get(c, 0) + n
                for i, kpi in self.wide:
                    key = keyspace.kpi(shard, kpi.name, day)
                    for (name, platform, app_version), n in combos.items():
                        if not kpi.matches(name):
                            continue
                        values = {"event_name": name, "platform": platform, "app_version": app_version}
                        for dim in kpi.dimensions:
                            f = (key, count.dim_field(dim, values[dim]))
                            hincr[f] = hincr.get(f, 0) + n
            for (i, values), n in acc.counts.items():
                kpi = self.kpis[i]
                key = keyspace.kpi(shard, kpi.name, day)
                if len(kpi.dimensions) == 1:
                    values = (values,)
                for dim, value in zip(kpi.dimensions, values):
                    if value is not None:
                        f = (key, count.dim_field(dim, value))
                        hincr[f] = hincr.get(f, 0) + n
            for i, (total, n) in acc.sums.items():
                key = keyspace.kpi(shard, self.kpis[i].name, day)
                sums[(key, sum_kind.SUM)] = sums.get((key, sum_kind.SUM), 0) + total
                sums[(key, sum_kind.N)] = sums.get((key, sum_kind.N), 0) + n
            for i, members in acc.uniques.items():
                key = keyspace.kpi(shard, self.kpis[i].name, day)
                ordered = list(members)
                for start in range(0, len(ordered), chunk):
                    part = ordered[start : start + chunk]
                    ops += ["P", fx.key(key), len(part), *part]
                written.add(key)
            for (i, member), n in acc.top.items():
                kpi = self.kpis[i]
                key = keyspace.kpi(shard, kpi.name, day)
                zincr[(key, member)] = zincr.get((key, member), 0) + n
                if kpi.all_time:
                    total_key = keyspace.kpi_all_time(shard, kpi.name)
                    persistent.add(total_key)
                    zincr[(total_key, member)] = zincr.get((total_key, member), 0) + n
        by_key: dict[str, list[tuple[str, int]]] = {}
        for (key, field), by in hincr.items():
            by_key.setdefault(key, []).append((field, by))
        for key, fields in by_key.items():
            emit_counters(ops, fx.key(key), fields)
            written.add(key)
        for (key, field), by in sums.items():
            ops += ["I", fx.key(key), field, lua_int(by)]
            written.add(key)
        for (key, member), by in zincr.items():
            ops += ["Z", fx.key(key), member, by]
            written.add(key)
        for key in written - persistent:
            ops += ["E", fx.key(key)]


@functools.lru_cache(maxsize=32)
def index(kpis: tuple[Kpi, ...]) -> KpiIndex:
    """The compiled index of a KPI catalog (compiled once per catalog)."""
    return KpiIndex(kpis)
