"""Exactly-once under redelivery: own pending first, claims of a dead consumer, trimmed entries."""

from __future__ import annotations

import dataclasses
import random
import time

import redis

from aggregator.worker import Worker, ensure_groups, pending_total
from schemas.days import day_of_ms
from schemas.settings import Settings
from tests.streamfeed import append, count, now_ms, pending_of, read_as, stat, stored

HOUR = 3_600_000


def traffic(rng: random.Random, entries: int, per_entry: int, ts: int) -> list[list]:
    """Batches of dialogue_open / command_executed from a few hundred villages."""
    names = ("dialogue_open", "command_executed")
    return [
        [stored(rng.choice(names), f"v{rng.randrange(300)}", ts + rng.randrange(1000)) for _ in range(per_entry)]
        for _ in range(entries)
    ]


def truth(batches: list[list], name: str) -> int:
    return sum(1 for b in batches for e in b if e.name == name)


def fast(settings: Settings, **changes: int) -> Settings:
    return dataclasses.replace(settings, claim_idle_ms=50, block_ms=50, **changes)


def test_own_pending_entries_are_finished_first_after_a_crash(r: redis.Redis, settings: Settings, rng: random.Random) -> None:
    s = fast(settings)
    ensure_groups(r, s)
    ts = now_ms() - HOUR
    batches = traffic(rng, 20, 30, ts)
    for b in batches:
        append(r, s, b)
    taken = read_as(r, s, "w1")  # w1 took everything, then died before applying any of it
    assert sum(len(e) for _, e in taken) > 0
    # a different worker may not claim yet (idle time not reached); w1 restarting finishes them
    Worker(r, dataclasses.replace(s, claim_idle_ms=60_000), consumer="w1").run(burst=True)
    day = day_of_ms(ts)
    assert count(r, s, "dialogue_open", day) == truth(batches, "dialogue_open")
    assert count(r, s, "command_executed", day) == truth(batches, "command_executed")
    assert pending_total(r, s) == 0


def test_a_dead_consumers_entries_are_claimed_and_applied_once(r: redis.Redis, settings: Settings, rng: random.Random) -> None:
    s = fast(settings)
    ensure_groups(r, s)
    ts = now_ms() - HOUR
    batches = traffic(rng, 40, 25, ts)
    for b in batches:
        append(r, s, b)
    dead = Worker(r, s, consumer="dead")
    taken = read_as(r, s, "dead")
    # it applied about half its batch (each entry atomically with its XACK) before SIGKILL
    for stream, entries in taken:
        dead.process(stream, entries[: len(entries) // 2])
    left = pending_of(r, s, "dead")
    assert left > 0
    time.sleep(0.1)  # past claim_idle_ms
    heir = Worker(r, s, consumer="heir")
    assert heir.claim_idle() == left
    assert heir.skipped == 0
    # the dead consumer was only hung: it wakes up and applies its stale batch; nothing counts twice
    for stream, entries in taken:
        dead.process(stream, entries)
    assert dead.skipped == sum(len(e) for _, e in taken)
    day = day_of_ms(ts)
    assert count(r, s, "dialogue_open", day) == truth(batches, "dialogue_open")
    assert count(r, s, "command_executed", day) == truth(batches, "command_executed")
    assert stat(r, s, "applied") == sum(len(b) for b in batches)
    assert pending_total(r, s) == 0


def test_entries_trimmed_while_pending_are_acked_not_dead_lettered(r: redis.Redis, settings: Settings, rng: random.Random) -> None:
    s = fast(settings)
    ensure_groups(r, s)
    ts = now_ms() - HOUR
    for b in traffic(rng, 10, 5, ts):
        append(r, s, b)
    taken = read_as(r, s, "w1")
    gone = [eid for _, entries in taken for eid, _ in entries[::2]]
    for stream, entries in taken:
        r.xdel(stream, *[eid for eid, _ in entries[::2]])  # as MINID trimming does
    # own-pending path: the server returns the deleted ones without fields
    w1 = Worker(r, dataclasses.replace(s, claim_idle_ms=60_000), consumer="w1")
    w1.run(burst=True)
    assert w1.trimmed == len(gone)
    assert w1.dead == 0
    assert pending_total(r, s) == 0
    # claim path: XAUTOCLAIM reports deleted ids separately; they must not break the claim
    for b in traffic(rng, 10, 5, ts):
        append(r, s, b)
    taken = read_as(r, s, "w2")
    for stream, entries in taken:
        r.xdel(stream, entries[0][0])
    time.sleep(0.1)
    heir = Worker(r, s, consumer="heir")
    heir.claim_idle()
    assert heir.trimmed == len(taken)
    assert heir.dead == 0
    assert pending_total(r, s) == 0
