"""Poison entries go to the shard's dead-letter stream with the reason; the worker moves on."""

from __future__ import annotations

import dataclasses
import time

import msgspec
import redis

from aggregator.worker import Worker, ensure_groups, pending_total
from schemas import keyspace
from schemas.catalog import STORED_ENCODER
from schemas.days import day_of_ms
from schemas.settings import Settings
from tests.streamfeed import append, append_raw, count, dead_letters, now_ms, read_as, stat, stored

HOUR = 3_600_000


def reasons(r: redis.Redis, s: Settings) -> list[str]:
    return [msgspec.json.decode(d[b"r"])["reason"] for d in dead_letters(r, s)]


def test_undecodable_and_unappliable_entries_are_set_aside(r: redis.Redis, settings: Settings) -> None:
    s = dataclasses.replace(settings, stream_shards=1)
    ensure_groups(r, s)
    ts = now_ms() - HOUR
    append(r, s, [stored("dialogue_open", "v1", ts)])
    append_raw(r, 0, {"e": b"\xc1not msgpack"})
    append_raw(r, 0, {"x": b"no e field"})
    # decodes, but its time is beyond any calendar: building its effects raises
    append_raw(r, 0, {"n": 1, "e": STORED_ENCODER.encode([stored("dialogue_open", "v2", 2**62)])})
    append(r, s, [stored("dialogue_open", "v3", ts)])
    w = Worker(r, s, consumer="w")
    w.run(burst=True)
    assert count(r, s, "dialogue_open", day_of_ms(ts)) == 2
    found = reasons(r, s)
    assert len(found) == 3 == w.dead == stat(r, s, "dead_lettered")
    assert sum(x.startswith("undecodable entry") for x in found) == 2
    assert sum(x.startswith("cannot apply entry") for x in found) == 1
    # the body is kept so the entry can be recovered
    assert {d[b"e"] for d in dead_letters(r, s)} >= {b"\xc1not msgpack", b""}
    assert pending_total(r, s) == 0


def test_an_entry_delivered_too_often_is_dead_lettered_by_its_claimer(r: redis.Redis, settings: Settings) -> None:
    s = dataclasses.replace(settings, claim_idle_ms=50, max_deliveries=3)
    ensure_groups(r, s)
    ts = now_ms() - HOUR
    append(r, s, [stored("command_executed", "a", ts)])
    append(r, s, [stored("command_executed", "b", ts)])
    taken = read_as(r, s, "crashy")
    ids = [(stream, entries[0][0]) for stream, entries in taken]
    poison_stream, poison_id = ids[0]
    # a consumer that crash-looped on it: delivered max_deliveries times so far
    r.xclaim(poison_stream, s.consumer_group, "crashy", 0, [poison_id], retrycount=s.max_deliveries)
    time.sleep(0.1)
    heir = Worker(r, s, consumer="heir")
    heir.claim_idle()  # this claim is delivery max+1 for the poison, delivery 2 for the other
    assert heir.dead == 1
    assert reasons(r, s) == [f"delivered {s.max_deliveries + 1} times (MAX_DELIVERIES=3)"]
    assert msgspec.json.decode(dead_letters(r, s)[0][b"r"])["entry_id"] == poison_id.decode()
    # an entry at exactly max_deliveries is still applied
    assert count(r, s, "command_executed", day_of_ms(ts)) == 1
    assert pending_total(r, s) == 0


def test_a_restarted_worker_does_not_crash_loop_on_its_own_poison(r: redis.Redis, settings: Settings) -> None:
    s = dataclasses.replace(settings, max_deliveries=2, stream_shards=1)
    ensure_groups(r, s)
    append(r, s, [stored("command_executed", "a", now_ms())])
    [(stream, entries)] = read_as(r, s, "w")
    r.xclaim(stream, s.consumer_group, "w", 0, [entries[0][0]], retrycount=2)
    Worker(r, s, consumer="w").run(burst=True)  # reading its own pending is delivery 3
    assert reasons(r, s) == ["delivered 3 times (MAX_DELIVERIES=2)"]
    assert pending_total(r, s) == 0


def test_dead_lettering_an_entry_someone_already_applied_does_nothing(r: redis.Redis, settings: Settings) -> None:
    s = dataclasses.replace(settings, claim_idle_ms=50, max_deliveries=1, stream_shards=1)
    ensure_groups(r, s)
    ts = now_ms() - HOUR
    append(r, s, [stored("dialogue_open", "a", ts)])
    [(stream, entries)] = read_as(r, s, "slow")
    time.sleep(0.1)
    heir = Worker(r, s, consumer="heir")
    r.xclaim(stream, s.consumer_group, "heir", 0, [entries[0][0]])  # delivery 2 > max
    assert heir._over_delivered(stream, entries)  # heir decides to dead-letter it ...
    Worker(r, s, consumer="slow").process(stream, entries)  # ... the slow one applies it first
    pipe = r.pipeline(transaction=False)
    eid, fields = entries[0]
    heir._dead_letter(pipe, 0, eid.decode(), fields, "delivered 2 times")
    assert pipe.execute() == [0]
    assert dead_letters(r, s) == []
    assert count(r, s, "dialogue_open", day_of_ms(ts)) == 1
    assert r.xlen(keyspace.worker_dead_letter(0)) == 0


def test_the_operator_lists_and_replays_a_workers_poison_entry(r: redis.Redis, settings: Settings) -> None:
    import asyncio

    from collector import deadletter
    from schemas.connection import open_async

    s = dataclasses.replace(settings, max_deliveries=2, stream_shards=1)
    ensure_groups(r, s)
    ev = stored("command_executed", "v-replayed", now_ms())
    append(r, s, [ev])
    [(stream, entries)] = read_as(r, s, "crashy")
    r.xclaim(stream, s.consumer_group, "crashy", 0, [entries[0][0]], retrycount=2)
    Worker(r, s, consumer="crashy").run(burst=True)  # delivery 3 > 2: filed, not applied
    assert count(r, s, "command_executed", day_of_ms(ev.ts)) == 0

    async def go(action: str) -> object:
        client = await open_async(s.redis_url)
        try:
            if action == "count":
                return await deadletter.count(client, streams=deadletter.sources(s))
            return await deadletter.replay(client, s)
        finally:
            await client.aclose()

    found = asyncio.run(go("count"))
    assert found["total"] == 1 and list(found["by_reason"]) == ["delivered 3 times (MAX_DELIVERIES=2)"]
    report = asyncio.run(go("replay"))  # after the fix: back into its shard's stream
    assert (report.replayed, report.still_failing) == (1, [])
    assert dead_letters(r, s) == []
    Worker(r, s, consumer="healthy").run(burst=True)
    assert count(r, s, "command_executed", day_of_ms(ev.ts)) == 1
    assert pending_total(r, s) == 0
