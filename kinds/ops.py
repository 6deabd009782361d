"""The ops ``apply.lua`` executes, and what the kinds' writers share while a batch accumulates.

``Effects`` holds one call's KEYS (every key an op names, by 1-based index), its flat op list and
its binary values; ``emit_counters`` and ``lua_int`` encode counter increments. The op table
itself is documented at the top of each branch of ``apply.lua`` and in ``tests/test_apply_ops.py``.

The declared KPIs' writers (``adder`` and ``emit`` of ``kinds.count``, ``uniques``, ``sum`` and
``top``) add an event's contribution to one UTC day's ``DayKpis`` in memory, then turn a batch's
accumulators into ops; ``aggregator/declared.py`` indexes them by event name, and
``aggregator/effects.py`` (the base aggregates and sessions) drives both.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any

from schemas import keyspace
from schemas.catalog import StoredEvent
from schemas.kpis import ACTOR_FIELDS as ACTORS

EXACT = 1 << 53  # integers a Lua number (a double) holds exactly


class Effects:
    def __init__(self, shard: int) -> None:
        self.shard = shard
        self.keys: list[str] = [keyspace.stream(shard), keyspace.shard_stats(shard)]
        self._index: dict[str, int] = {}
        self.ops: list[str | int] = []
        self.blobs: list[bytes] = []  # binary values (msgpack in the script has no bin type): ARGV[8..]
        self.applied = 0
        self.late = 0

    def key(self, name: str) -> int:
        idx = self._index.get(name)
        if idx is None:
            self.keys.append(name)
            idx = self._index[name] = len(self.keys)  # Lua is 1-based
        return idx


COUNTER_CHUNK = 500  # fields per H op, well under Lua's unpack limit


def emit_counters(ops: list[Any], key: int, fields: list[tuple[str, int]]) -> None:
    """H ops: counters of one hash incremented by one HMGET and one HSET per chunk of fields.

    For counters that stay far below 2**53 (event counts, durations in ms): the script adds in
    Lua numbers. One HINCRBY per field cost ~10 us each on a hash small enough to be a listpack.
    """
    for start in range(0, len(fields), COUNTER_CHUNK):
        part = fields[start : start + COUNTER_CHUNK]
        ops += ["H", key, len(part)]
        for field, by in part:
            ops += (field, by)


def lua_int(n: int) -> int | str:
    """An increment as the ops carry it: a number when a double holds it exactly, else its text."""
    return n if -EXACT < n < EXACT else str(n)


# -- the declared KPIs' accumulators -----------------------------------------------------------
class DayKpis:
    """One UTC day's declared-KPI contributions of a batch, by KPI position in the index."""

    __slots__ = ("counts", "sums", "top", "uniques")

    def __init__(self) -> None:
        self.counts: dict[tuple[int, Any], int] = {}  # (kpi, dimension value(s)) -> events
        self.uniques: dict[int, set[str]] = {}
        self.sums: dict[int, list[int]] = {}  # kpi -> [scaled sum, n]
        self.top: dict[tuple[int, str], int] = {}  # (kpi, member) -> events


Adder = Callable[[DayKpis, StoredEvent], None]

# the built-in dimensions: envelope attributes of the stored event
BUILTIN = {"platform": "platform", "app_version": "app_version", "event_name": "name"}


def dimension_value(ev: StoredEvent, dim: str) -> str | None:
    """The event's value of a dimension (built-in, second actor, or payload field); None = absent."""
    if dim == "platform":
        return ev.platform
    if dim == "app_version":
        return ev.app_version
    if dim == "event_name":
        return ev.name
    if dim in ACTOR_FIELDS:
        return ACTOR_FIELDS[dim](ev)
    return payload_value(ev.payload.get(dim))


# the envelope's second actor: a signed-in user, and an anonymous visitor, which is an
# anonymous id seen without a user (seed 002's two counts)
ACTOR_FIELDS: dict[str, Callable[[StoredEvent], str | None]] = dict(zip(ACTORS, (
    lambda ev: ev.user,
    lambda ev: ev.anonymous if ev.user is None else None,
)))


def payload_value(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


def dims_getter(dims: tuple[str, ...]) -> Callable[[StoredEvent], Any]:
    """The event's dimension values: one value for one dimension, else a tuple (None = absent)."""
    if all(d in BUILTIN for d in dims):
        return attrgetter(*(BUILTIN[d] for d in dims))  # C; a tuple when there are several
    return lambda ev: tuple(dimension_value(ev, d) for d in dims)
