"""Effects of the declared KPIs that need an aggregate of their own (see ``schemas/kpis.py``).

Accumulates one stream entry's contributions in memory, then emits ``apply.lua`` ops: PFADD for
uniques of a field, HINCRBY for dimension counts and scaled sums, ZINCRBY for top-N tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from schemas import keyspace
from schemas.catalog import StoredEvent
from schemas.kpis import Kpi

if TYPE_CHECKING:
    from aggregator.effects import Effects


def dimension_value(ev: StoredEvent, dim: str) -> str | None:
    if dim == "platform":
        return ev.platform
    if dim == "app_version":
        return ev.app_version
    if dim == "event_name":
        return ev.name
    value = ev.payload.get(dim)
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value).lower() if isinstance(value, bool) else str(value)


class Declared:
    def __init__(self, shard: int, kpis: Iterable[Kpi]) -> None:
        self.shard = shard
        self.kpis = [k for k in kpis if k.own_aggregate]
        self.uniques: dict[str, set[str]] = {}
        self.hincr: dict[tuple[str, str], int] = {}
        self.zincr: dict[tuple[str, str], int] = {}
        self.persistent: set[str] = set()  # all-time tables: no TTL

    def add(self, ev: StoredEvent, day: str) -> None:
        for kpi in self.kpis:
            if not kpi.matches(ev.name):
                continue
            key = keyspace.kpi(self.shard, kpi.name, day)
            if kpi.kind == "count":
                for dim in kpi.dimensions:
                    value = dimension_value(ev, dim)
                    if value is not None:
                        self._hincr(key, f"{dim}={value}", 1)
            elif kpi.kind == "uniques":
                value = dimension_value(ev, kpi.field or "")
                if value is not None:
                    self.uniques.setdefault(key, set()).add(value)
            elif kpi.kind == "sum":
                raw = ev.payload.get(kpi.field or "")
                if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                    self._hincr(key, "sum", round(raw * kpi.scale))
                    self._hincr(key, "n", 1)
            elif kpi.kind == "top":
                member = dimension_value(ev, kpi.field or "")
                if member is not None:
                    self.zincr[(key, member)] = self.zincr.get((key, member), 0) + 1
                    if kpi.all_time:
                        total = keyspace.kpi_all_time(self.shard, kpi.name)
                        self.persistent.add(total)
                        self.zincr[(total, member)] = self.zincr.get((total, member), 0) + 1

    def _hincr(self, key: str, field: str, by: int) -> None:
        self.hincr[(key, field)] = self.hincr.get((key, field), 0) + by

    def emit(self, fx: Effects, chunk: int) -> None:
        written: set[str] = set()
        for key, members in self.uniques.items():
            ordered = sorted(members)
            for start in range(0, len(ordered), chunk):
                part = ordered[start : start + chunk]
                fx.ops += ["P", fx.key(key), len(part), *part]
            written.add(key)
        for (key, field), by in self.hincr.items():
            fx.ops += ["I", fx.key(key), field, by]
            written.add(key)
        for (key, member), by in self.zincr.items():
            fx.ops += ["Z", fx.key(key), member, by]
            written.add(key)
        for key in sorted(written - self.persistent):
            fx.ops += ["E", fx.key(key)]
