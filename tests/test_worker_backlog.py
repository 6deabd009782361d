"""Per-shard backlog gauges (lag, pending, oldest pending idle), consumer pruning, trimming."""

from __future__ import annotations

import dataclasses
import time

import redis
from prometheus_client import CollectorRegistry

from aggregator.maintenance import prune_consumers, trim
from aggregator.metrics import StreamBacklogCollector
from aggregator.worker import Worker, ensure_groups
from schemas import keyspace
from schemas.settings import Settings
from tests.streamfeed import append, now_ms, read_as, stored


def villages_on(shard: int, settings: Settings, n: int) -> list[str]:
    out, i = [], 0
    while len(out) < n:
        if keyspace.shard_of(f"v{i}", settings.stream_shards) == shard:
            out.append(f"v{i}")
        i += 1
    return out


def test_backlog_gauges_report_each_shard(r: redis.Redis, settings: Settings) -> None:
    s = dataclasses.replace(settings, stream_shards=3)
    ensure_groups(r, s)
    ts = now_ms()
    for v in villages_on(0, s, 4):
        append(r, s, [stored("dialogue_open", v, ts)])
    read_as(r, s, "dead")  # 4 pending on shard 0
    for v in villages_on(1, s, 3):
        append(r, s, [stored("dialogue_open", v, ts)])  # 3 undelivered on shard 1
    time.sleep(0.3)  # the server's idle time is in whole ms: leave a margin over the bound below
    registry = CollectorRegistry()
    registry.register(StreamBacklogCollector(r, s))

    def gauge(name: str, shard: int) -> float | None:
        return registry.get_sample_value(name, {"shard": str(shard)})

    assert [gauge("analytics_stream_pending_entries", i) for i in range(3)] == [4, 0, 0]
    assert [gauge("analytics_stream_lag_entries", i) for i in range(3)] == [0, 3, 0]
    assert (gauge("analytics_stream_oldest_pending_idle_seconds", 0) or 0) >= 0.2
    assert gauge("analytics_stream_oldest_pending_idle_seconds", 1) == 0
    Worker(r, dataclasses.replace(s, claim_idle_ms=10), consumer="w").run(burst=True)
    assert [gauge("analytics_stream_pending_entries", i) for i in range(3)] == [0, 0, 0]
    assert [gauge("analytics_stream_lag_entries", i) for i in range(3)] == [0, 0, 0]


def test_silent_consumers_with_nothing_pending_are_pruned(r: redis.Redis, settings: Settings) -> None:
    s = dataclasses.replace(settings, stream_shards=1)
    ensure_groups(r, s)
    append(r, s, [stored("dialogue_open", "v", now_ms())])
    read_as(r, s, "holds-one")
    read_as(r, s, "holds-none")
    time.sleep(0.2)
    read_as(r, s, "recent")
    assert prune_consumers(r, s, idle_ms=150) == 1
    names = {c["name"].decode() for c in r.xinfo_consumers(keyspace.stream(0), s.consumer_group)}
    assert names == {"holds-one", "recent"}  # its pending entry is not thrown away


def test_trim_bounds_the_late_and_dead_letter_streams(r: redis.Redis, settings: Settings) -> None:
    s = dataclasses.replace(settings, stream_shards=1, analytics_retention_days=1)
    for _ in range(1000):
        r.xadd(keyspace.late_stream(0), {keyspace.ENTRY_EVENTS: b"x"})
        r.xadd(keyspace.worker_dead_letter(0), {keyspace.ENTRY_EVENTS: b"x"})
    trim(r, s, now_ms() + 2 * 86_400_000)
    # MINID ~ removes whole nodes: nearly everything goes, cheaply
    assert r.xlen(keyspace.late_stream(0)) < 200
    assert r.xlen(keyspace.worker_dead_letter(0)) < 200
    for _ in range(300):
        r.xadd(keyspace.late_stream(0), {keyspace.ENTRY_EVENTS: b"x"})
    trim(r, s)  # nothing is old enough now
    assert r.xlen(keyspace.late_stream(0)) >= 300
