"""A worker that crash-loops (SIGKILLed right after each read of a backlog) does not dead-letter
healthy data: a crash is not the entry's fault. Only failures of an entry itself count."""

from __future__ import annotations

import random
import time

import msgspec
import redis

from aggregator.worker import ensure_groups
from schemas import keyspace
from schemas.days import day_of_ms
from schemas.settings import Settings
from tests.services import aggregator, wait_drained
from tests.streamfeed import (append, append_raw, count, dead_letters, entry_fields, now_ms,
                              pending_of, stored)

HOUR = 3_600_000
ENTRIES, PER_ENTRY, MAX = 400, 100, 2


def delivered_most(r: redis.Redis, s: Settings) -> int:
    """The highest delivery count among pending entries."""
    most = 0
    for shard in range(s.stream_shards):
        for p in r.xpending_range(keyspace.stream(shard), s.consumer_group, "-", "+", 10_000):
            most = max(most, int(p["times_delivered"]))
    return most


def test_sigkills_right_after_each_read_dead_letter_nothing(
    r: redis.Redis, env: dict[str, str], rng: random.Random
) -> None:
    env = {**env, "MAX_DELIVERIES": str(MAX), "CLAIM_IDLE_MS": "60000"}
    s = Settings.from_env(env)
    ensure_groups(r, s)
    ts = now_ms() - HOUR
    for _ in range(ENTRIES):
        append(r, s, [stored("dialogue_open", f"v{rng.randrange(5000)}", ts) for _ in range(PER_ENTRY)])
    # real poison among them: one that cannot be decoded, one whose effects cannot be built
    append_raw(r, 1, {keyspace.ENTRY_EVENTS: b"\xc1not msgpack"})
    append_raw(r, 2, entry_fields([stored("dialogue_open", "v-bad", 2**62)]))
    total = ENTRIES * PER_ENTRY

    kills = 0
    for _ in range(8):  # the same name each time, as a supervisor restarts its child
        before = delivered_most(r, s)
        w = aggregator(env, "crashy")
        deadline = time.monotonic() + 30
        # kill it as soon as it has (re-)read its entries: their delivery count went up
        while delivered_most(r, s) == before and time.monotonic() < deadline:
            if w.proc.poll() is not None:
                break
            time.sleep(0.002)
        w.proc.kill()
        w.proc.wait()
        kills += 1
        if delivered_most(r, s) > MAX + 2:
            break
    # the crashes redelivered entries more often than MAX_DELIVERIES: the case the old rule got wrong
    assert delivered_most(r, s) > MAX, "the worker applied everything before each kill"

    # the healthy one retries a failed entry as soon as it is idle, so the poison is filed quickly
    healthy = aggregator({**env, "CLAIM_IDLE_MS": "200"}, "crashy")
    try:
        wait_drained(r, s, timeout=120)
    finally:
        healthy.stop()
    assert pending_of(r, s) == 0
    assert count(r, s, "dialogue_open", day_of_ms(ts)) == total, kills
    reasons = sorted(msgspec.json.decode(d[keyspace.ENTRY_REASON_B])["reason"].split(":")[0]
                     for d in dead_letters(r, s))
    assert reasons == ["cannot apply entry", "undecodable entry"], reasons
