"""Turn stream entries (lists of StoredEvent) into the ops that ``apply.lua`` executes.

All decisions that need Python (late or not, which day, which keys) are made here, so the script
only writes. Keys are passed in KEYS (cluster-safe: all share the shard's hash tag).

A ``Plan`` accumulates one or more entries of one shard: day keys are resolved once per distinct
day, counters are merged (one HINCRBY per field and batch, one EXPIRE per key), each event visits
only the declared KPIs that match its name. ``build`` is the plan of a single entry.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from aggregator.declared import DayKpis, index
from kinds.ops import Effects, emit_counters
from kinds import count
from schemas import keyspace
from schemas.catalog import STORED_ENCODER, StoredEvent
from schemas.days import DAY_MS, day_of_number
from schemas.kpis import Kpi

PFADD_CHUNK = 500  # members per PFADD call, well under Lua's unpack limit
HOUR_MS = 3_600_000


def _wire_struct() -> type[msgspec.Struct]:
    """``StoredEvent``'s fields and wire layout, without its ``__post_init__``.

    That hook only expands the compact wire form of ``event_id``, ``ts_original`` and
    ``client_ts``, which no aggregate reads; the workers decode every event, so they skip it
    (~5 % of a worker's CPU). Late events are re-encoded as read, still in the compact form,
    which ``StoredEvent`` decodes. Derived from the struct, so a new field follows by itself.
    """
    spec: list[tuple[object, ...]] = []
    for f in msgspec.structs.fields(StoredEvent):
        if f.default is not msgspec.NODEFAULT:
            spec.append((f.name, f.type, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            spec.append((f.name, f.type, msgspec.field(default_factory=f.default_factory)))
        else:
            spec.append((f.name, f.type))
    config = StoredEvent.__struct_config__
    return msgspec.defstruct(
        "WireEvent", spec, array_like=config.array_like, omit_defaults=config.omit_defaults,
        forbid_unknown_fields=config.forbid_unknown_fields,
    )


WireEvent = _wire_struct()
ENTRY_DECODER = msgspec.msgpack.Decoder(list[WireEvent])  # type: ignore[valid-type]


def is_late(ev: StoredEvent, late_window_ms: int) -> bool:
    """Late means it reached the collector more than the window after its event time.

    Judged per event from ``received`` (server time at arrival), not from when a worker gets to
    it: a backlog or a replay decides the same way, and an event that arrived in time still counts
    after a worker outage. An event exactly ``late_window_ms`` old on arrival still counts.
    History brought in by the admin import path is never late.
    """
    return ev.ts < ev.received - late_window_ms and not ev.historical


class _Day:
    """One UTC day's base aggregates in a plan."""

    __slots__ = ("base", "kpis", "name", "villages")

    def __init__(self, name: str) -> None:
        self.name = name
        self.villages: set[str] = set()
        # (event name, hour, platform, app version) -> events: the hourly and daily counters, and
        # the declared counts by built-in dimensions (see KpiIndex.wide), from one dict update
        self.base: dict[tuple[str, int, str, str], int] = {}
        self.kpis = DayKpis()


class Plan:
    """The effects of one or more entries of one shard, applied by one ``apply.lua`` call.

    ``add`` one entry's events at a time (it returns that entry's applied and late counts);
    ``finish`` once. An entry whose ``add`` raised leaves the plan half-changed: start a new plan
    from the entries that succeeded. ``rebuild=True`` (the backfill) leaves session pairing to the
    caller, which pairs in memory, and leaves the shard's operational counters alone.
    """

    def __init__(
        self, shard: int, late_window_ms: int, kpis: Sequence[Kpi] = (), rebuild: bool = False
    ) -> None:
        self.fx = Effects(shard)
        self.shard = shard
        self.late_window_ms = late_window_ms
        self.rebuild = rebuild
        self.kpi_index = index(tuple(kpis))
        self.days: dict[int, _Day] = {}
        self.sketches: dict[int, int] = {}  # day number -> key index of the day's duration sketch
        self.late: list[StoredEvent] = []
        self._session_prefix = keyspace.session_state(shard, "")
        # session ops in event order; a start whose end follows in the plan with no other op on
        # its state in between becomes one B op (the start, then the end, in one step)
        self.session_ops: list[list[str | int]] = []
        self._opened: dict[int, int] = {}  # state key index -> its still unpaired S op

    def _day(self, dn: int) -> _Day:
        day = self.days[dn] = _Day(day_of_number(dn))  # raises for a time beyond the calendar
        return day

    def _sketch(self, dn: int) -> int:
        idx = self.sketches.get(dn)
        if idx is None:
            idx = self.sketches[dn] = self.fx.key(keyspace.session_sketch(self.shard, day_of_number(dn)))
        return idx

    def add(self, events: Sequence[StoredEvent]) -> tuple[int, int]:
        """Accumulate one entry's events; returns (applied, late) of this entry."""
        fx = self.fx
        key = fx.key
        days = self.days
        late = self.late
        by_name = self.kpi_index.by_name
        window = self.late_window_ms
        sessions = not self.rebuild
        prefix = self._session_prefix
        sessions_ops = self.session_ops
        opened = self._opened
        n_late = 0
        dn_last = None
        day = base = villages = None
        for ev in events:
            ts = ev.ts
            if ts < ev.received - window and not ev.historical:  # is_late, inlined
                n_late += 1
                late.append(ev)
                continue
            dn = ts // DAY_MS
            if dn != dn_last:
                day = days.get(dn)
                if day is None:
                    day = self._day(dn)
                dn_last, base, villages = dn, day.base, day.villages
            villages.add(ev.village)
            name = ev.name
            k = (name, ts % DAY_MS // HOUR_MS, ev.platform, ev.app_version)
            base[k] = base.get(k, 0) + 1
            adders = by_name.get(name)
            if adders is None:
                adders = self.kpi_index.adders(name)
            for add in adders:
                add(day.kpis, ev)
            if ev.session is None or not sessions:
                continue
            if name == "session_start":
                state = key(prefix + ev.session)
                if opened.pop(state, None) is None:
                    opened[state] = len(sessions_ops)  # may pair with its end below
                sessions_ops.append(["S", state, ts, self._sketch(dn)])
            elif name == "session_end":
                state = key(prefix + ev.session)
                alt = key(prefix + ev.session_alt) if ev.session_alt else 0
                at = opened.pop(state, None)
                if alt:
                    opened.pop(alt, None)
                end = [dn, self._sketch(dn), dn - 1, self._sketch(dn - 1)]
                if at is not None and not alt:
                    start = sessions_ops[at]
                    sessions_ops[at] = ["B", state, start[2], start[3], ts, *end]
                else:
                    sessions_ops.append(["F", state, alt, ts, *end])
        applied = len(events) - n_late
        fx.applied += applied
        fx.late += n_late
        return applied, n_late

    def finish(self) -> Effects:
        """Append the merged aggregate ops; the plan is done."""
        fx = self.fx
        ops = fx.ops
        for op in self.session_ops:
            ops += op
        shard = self.shard
        for day in self.days.values():
            dau = fx.key(keyspace.dau(shard, day.name))
            ordered = list(day.villages)
            for start in range(0, len(ordered), PFADD_CHUNK):
                chunk = ordered[start : start + PFADD_CHUNK]
                ops += ["P", dau, len(chunk), *chunk]
            ops += ["E", dau]
            counts = fx.key(keyspace.counts(shard, day.name))
            hours: dict[str, int] = {}
            totals: dict[str, int] = {}
            for (name, hour, _, _), n in day.base.items():
                field = count.hour_field(name, hour)
                hours[field] = hours.get(field, 0) + n
                totals[name] = totals.get(name, 0) + n
            emit_counters(ops, counts, [*hours.items(), *totals.items()])
            ops += ["E", counts]
        self.kpi_index.emit(fx, shard, ((d.name, d.kpis, d.base) for d in self.days.values()), PFADD_CHUNK)
        if fx.applied and not self.rebuild:
            ops += ["I", 2, "applied", fx.applied]
        if self.late:
            fx.blobs.append(STORED_ENCODER.encode(self.late))
            ops += ["L", fx.key(keyspace.late_stream(shard)), 7 + len(fx.blobs), fx.late]
        return fx


def build(
    shard: int,
    events: Sequence[StoredEvent],
    late_window_ms: int,
    kpis: Sequence[Kpi] = (),
    rebuild: bool = False,
) -> Effects:
    """Ops for one entry; its late events are kept aside (msgpack list) in the late stream.

    Base aggregates are always kept; ``kpis`` adds the declared KPIs' own aggregates.
    ``rebuild=True`` (the backfill) leaves session pairing to the caller, which pairs in memory,
    and leaves the shard's operational counters alone.
    """
    plan = Plan(shard, late_window_ms, kpis, rebuild)
    plan.add(events)
    return plan.finish()
