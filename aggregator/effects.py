"""Turn one stream entry (a list of StoredEvent) into the ops that ``apply.lua`` executes.

All decisions that need Python (late or not, which day, which keys) are made here, so the script
only writes. Keys are passed in KEYS (cluster-safe: all share the shard's hash tag).
"""

from __future__ import annotations

from collections.abc import Sequence

from aggregator.declared import Declared
from schemas import keyspace
from schemas.catalog import STORED_ENCODER, StoredEvent
from schemas.kpis import Kpi
from schemas.days import DAY_MS, day_number, day_of_ms, day_of_number

PFADD_CHUNK = 500  # members per PFADD call, well under Lua's unpack limit


class Effects:
    def __init__(self, shard: int) -> None:
        self.shard = shard
        self.keys: list[str] = [keyspace.stream(shard), keyspace.shard_stats(shard)]
        self._index: dict[str, int] = {}
        self.ops: list[str | int] = []
        self.applied = 0
        self.late = 0

    def key(self, name: str) -> int:
        idx = self._index.get(name)
        if idx is None:
            self.keys.append(name)
            idx = self._index[name] = len(self.keys)  # Lua is 1-based
        return idx


def is_late(ev: StoredEvent, late_window_ms: int) -> bool:
    """Late means it reached the collector more than the window after its event time.

    Judged per event from ``received`` (server time at arrival), not from when a worker gets to
    it: a backlog or a replay decides the same way, and an event that arrived in time still counts
    after a worker outage. An event exactly ``late_window_ms`` old on arrival still counts.
    History brought in by the admin import path is never late.
    """
    return ev.ts < ev.received - late_window_ms and not ev.historical


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
    fx = Effects(shard)
    declared = Declared(shard, kpis)
    uniques: dict[str, set[str]] = {}
    counters: dict[tuple[str, str], int] = {}
    late: list[StoredEvent] = []
    for ev in events:
        if is_late(ev, late_window_ms):
            fx.late += 1
            late.append(ev)
            continue
        fx.applied += 1
        day = day_of_ms(ev.ts)
        declared.add(ev, day)
        uniques.setdefault(keyspace.dau(shard, day), set()).add(ev.village)
        ckey = keyspace.counts(shard, day)
        hour = (ev.ts % DAY_MS) // 3_600_000
        for field in (ev.name, f"{ev.name}@{hour:02d}"):
            counters[(ckey, field)] = counters.get((ckey, field), 0) + 1
        if ev.session is None or rebuild:
            continue
        if ev.name == "session_start":
            state = fx.key(keyspace.session_state(shard, ev.session))
            sketch = fx.key(keyspace.session_sketch(shard, day))
            fx.ops += ["S", state, ev.ts, sketch]
        elif ev.name == "session_end":
            state = fx.key(keyspace.session_state(shard, ev.session))
            alt = fx.key(keyspace.session_state(shard, ev.session_alt)) if ev.session_alt else 0
            today = day_number(ev.ts)
            fx.ops += ["F", state, alt, ev.ts]
            for d in (today, today - 1):
                fx.ops += [d, fx.key(keyspace.session_sketch(shard, day_of_number(d)))]
    for key, members in uniques.items():
        ordered = sorted(members)
        for start in range(0, len(ordered), PFADD_CHUNK):
            chunk = ordered[start : start + PFADD_CHUNK]
            fx.ops += ["P", fx.key(key), len(chunk), *chunk]
        fx.ops += ["E", fx.key(key)]
    written: set[str] = set()
    for (key, field), n in counters.items():
        fx.ops += ["I", fx.key(key), field, n]
        written.add(key)
    for key in written:
        fx.ops += ["E", fx.key(key)]
    declared.emit(fx, PFADD_CHUNK)
    if fx.applied and not rebuild:
        fx.ops += ["I", 2, "applied", fx.applied]
    if late:
        fx.ops += ["L", fx.key(keyspace.late_stream(shard)), STORED_ENCODER.encode(late), fx.late]
    return fx
