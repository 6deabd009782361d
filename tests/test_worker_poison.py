"""Poison entries go to the shard's dead-letter stream with the reason; the worker moves on."""

from __future__ import annotations

import dataclasses
import time

import msgspec
import pytest
import redis

from aggregator import worker
from aggregator.worker import Worker, ensure_groups, pending_total
from schemas import keyspace
from schemas.days import day_of_ms
from schemas.settings import Settings
from tests.conftest import BACKENDS
from tests.streamfeed import (append, append_raw, count, dead_letters, entry_fields, now_ms, read_as,
                              stat, stored)

HOUR = 3_600_000


def record(dead: dict[bytes, bytes]) -> dict:
    """A worker dead letter's reason record."""
    return msgspec.json.decode(dead[keyspace.ENTRY_REASON_B])


def reasons(r: redis.Redis, s: Settings) -> list[str]:
    return [record(d)["reason"] for d in dead_letters(r, s)]


def test_undecodable_and_unappliable_entries_are_set_aside(r: redis.Redis, settings: Settings) -> None:
    s = dataclasses.replace(settings, stream_shards=1)
    ensure_groups(r, s)
    ts = now_ms() - HOUR
    append(r, s, [stored("dialogue_open", "v1", ts)])
    append_raw(r, 0, {keyspace.ENTRY_EVENTS: b"\xc1not msgpack"})
    append_raw(r, 0, {"x": b"no e field"})
    # decodes, but its time is beyond any calendar: building its effects raises
    append_raw(r, 0, entry_fields([stored("dialogue_open", "v2", 2**62)]))
    append(r, s, [stored("dialogue_open", "v3", ts)])
    w = Worker(r, s, consumer="w")
    w.run(burst=True)
    assert count(r, s, "dialogue_open", day_of_ms(ts)) == 2
    found = reasons(r, s)
    assert len(found) == 3 == w.dead == stat(r, s, "dead_lettered")
    assert sum(x.startswith("undecodable entry") for x in found) == 2
    assert sum(x.startswith("cannot apply entry") for x in found) == 1
    # the body is kept so the entry can be recovered
    assert {d[keyspace.ENTRY_EVENTS_B] for d in dead_letters(r, s)} >= {b"\xc1not msgpack", b""}
    assert pending_total(r, s) == 0


def test_crash_redeliveries_do_not_count_but_an_entrys_own_failures_do(r: redis.Redis, settings: Settings) -> None:
    s = dataclasses.replace(settings, claim_idle_ms=50, max_deliveries=3)
    ensure_groups(r, s)
    ts = now_ms() - HOUR
    append(r, s, [stored("command_executed", "a", ts)])
    poison_id = append_raw(r, 0, {keyspace.ENTRY_EVENTS: b"\xc1not msgpack"})
    taken = read_as(r, s, "crashy")
    # a consumer that crash-looped on them: delivered far more than max_deliveries times
    for stream, entries in taken:
        r.xclaim(stream, s.consumer_group, "crashy", 0, [e[0] for e in entries], retrycount=10)
    time.sleep(0.1)
    heir = Worker(r, s, consumer="heir")
    heir.claim_idle()
    assert heir.dead == 0 and count(r, s, "command_executed", day_of_ms(ts)) == 1
    assert r.hget(keyspace.failures(0), poison_id) == b"1"  # its own first failure
    for i in range(s.max_deliveries):  # claimed again and again: each is one more failure
        time.sleep(0.1)
        Worker(r, s, consumer=f"heir-{i}").claim_idle()
    found = reasons(r, s)
    assert len(found) == 1 and found[0].startswith("undecodable entry")
    assert found[0].endswith("(failed 4 times, MAX_DELIVERIES=3)")
    assert record(dead_letters(r, s)[0])["entry_id"] == poison_id
    assert r.hlen(keyspace.failures(0)) == 0 and pending_total(r, s) == 0


def test_a_restarted_worker_applies_its_own_pending_however_often_delivered_below_max_claims(
    r: redis.Redis, settings: Settings
) -> None:
    s = dataclasses.replace(settings, max_deliveries=2, stream_shards=1)
    ensure_groups(r, s)
    ts = now_ms()
    append(r, s, [stored("command_executed", "a", ts)])
    [(stream, entries)] = read_as(r, s, "w")
    # far more than MAX_DELIVERIES; re-read and claimed once more on its own: MAX_CLAIMS, not past
    r.xclaim(stream, s.consumer_group, "w", 0, [entries[0][0]], retrycount=s.max_claims - 2)
    Worker(r, s, consumer="w").run(burst=True)
    assert reasons(r, s) == [] and count(r, s, "command_executed", day_of_ms(ts)) == 1
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
    # heir decides to dead-letter it, but the slow one applies it first
    Worker(r, s, consumer="slow").process(stream, entries)
    pipe = r.pipeline(transaction=False)
    eid, fields = entries[0]
    heir._dead_letter(pipe, 0, eid.decode(), fields, "delivered 2 times")
    assert pipe.execute() == [0]
    assert dead_letters(r, s) == []
    assert count(r, s, "dialogue_open", day_of_ms(ts)) == 1
    assert r.xlen(keyspace.worker_dead_letter(0)) == 0


def test_the_operator_lists_and_replays_a_workers_poison_entry(
    r: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from collector import deadletter
    from infra.connection import open_async

    class Bug:  # a worker release that cannot read the entries
        def decode(self, data: bytes) -> object:
            raise msgspec.DecodeError("a bug")

    s = dataclasses.replace(settings, max_deliveries=2, stream_shards=1)
    ensure_groups(r, s)
    ev = stored("command_executed", "v-replayed", now_ms())
    append(r, s, [ev])
    monkeypatch.setattr(worker, "ENTRY_DECODER", Bug())
    Worker(r, s, consumer="buggy").run(burst=True)  # failure 3 > 2: filed, not applied
    monkeypatch.undo()  # the fix
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
    assert found["total"] == 1
    assert list(found["by_reason"]) == ["undecodable entry: DecodeError('a bug') (failed 3 times, MAX_DELIVERIES=2)"]
    report = asyncio.run(go("replay"))  # after the fix: back into its shard's stream
    assert (report.replayed, report.still_failing) == (1, [])
    assert dead_letters(r, s) == []
    Worker(r, s, consumer="healthy").run(burst=True)
    assert count(r, s, "command_executed", day_of_ms(ev.ts)) == 1
    assert pending_total(r, s) == 0


def max_claims_reason(n: int, s: Settings) -> str:
    return f"delivered {n} times without being applied: it may crash the worker (MAX_CLAIMS={s.max_claims})"


def test_max_claims_defaults_to_four_times_max_deliveries_and_at_least_20() -> None:
    assert Settings.from_env({}).max_claims == 20 == Settings().max_claims
    assert Settings.from_env({"MAX_DELIVERIES": "2"}).max_claims == 20
    assert Settings.from_env({"MAX_DELIVERIES": "10"}).max_claims == 40
    assert Settings.from_env({"MAX_DELIVERIES": "10", "MAX_CLAIMS": "7"}).max_claims == 7


def _after_one_event(r: redis.Redis, s: Settings, ts: int) -> tuple[str, bytes]:
    """Shard 0's stream: one good event, then the poison entry, a well-formed one (had it been
    applied, it would count) that kills the workers taking it; its id and its events' bytes."""
    ensure_groups(r, s)
    append(r, s, [stored("dialogue_open", "a", ts)])
    fields = entry_fields([stored("command_executed", "v-poison", ts)])
    return append_raw(r, 0, fields), fields[keyspace.ENTRY_EVENTS]


@pytest.mark.parametrize("redis_url", BACKENDS, indirect=True)
def test_an_entry_delivered_past_max_claims_is_dead_lettered_unread(r: redis.Redis, settings: Settings) -> None:
    s = dataclasses.replace(settings, claim_idle_ms=50, max_deliveries=2, max_claims=6, stream_shards=1)
    ts = now_ms() - HOUR
    poison_id, body = _after_one_event(r, s, ts)
    below_id = append(r, s, [stored("dialogue_open", "b", ts)])[0][0]
    [(stream, entries)] = read_as(r, s, "crashy-0")  # delivery 1 of each, then the crash
    # workers that took the poison entry and died on it: one delivery each, never acked
    for i in range(1, s.max_claims):
        r.xclaim(stream, s.consumer_group, f"crashy-{i}", 0, [poison_id])
    # another one died in hand too, but far fewer times: below the limit
    for i in range(1, s.max_claims // 2):
        r.xclaim(stream, s.consumer_group, f"crashy-{i}", 0, [below_id])
    assert {p["message_id"].decode(): p["times_delivered"]
            for p in r.xpending_range(stream, s.consumer_group, "-", "+", 10)}[poison_id] == s.max_claims
    time.sleep(0.1)
    heir = Worker(r, s, consumer="heir")
    heir.claim_idle()  # delivery max_claims + 1 of the poison entry: filed, not decoded
    assert reasons(r, s) == [max_claims_reason(s.max_claims + 1, s)]
    [filed] = dead_letters(r, s)
    assert record(filed)["entry_id"] == poison_id and filed[keyspace.ENTRY_EVENTS_B] == body
    assert count(r, s, "command_executed", day_of_ms(ts)) == 0
    assert count(r, s, "dialogue_open", day_of_ms(ts)) == 2  # the others, the one below the limit too
    assert heir.dead == 1 == stat(r, s, "dead_lettered")
    assert pending_total(r, s) == 0 and r.hlen(keyspace.failures(0)) == 0


class Crash(BaseException):
    """What a segfault or an OOM kill does to the worker: no ``except Exception`` sees it."""


def test_an_entry_that_kills_every_worker_is_filed_and_its_batch_mates_applied(
    r: redis.Redis, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = dataclasses.replace(settings, claim_idle_ms=50, max_deliveries=2, max_claims=8, stream_shards=1)
    ts = now_ms() - HOUR
    poison_id, body = _after_one_event(r, s, ts)
    for v in ("b", "c"):
        append(r, s, [stored("dialogue_open", v, ts)])
    real = worker.ENTRY_DECODER

    class Killer:  # a decoder that takes the process down on that one entry
        def decode(self, data: bytes) -> object:
            if data == body:
                raise Crash
            return real.decode(data)

    monkeypatch.setattr(worker, "ENTRY_DECODER", Killer())
    crashes = 0
    with pytest.raises(Crash):
        Worker(r, s, consumer="w-0").read_new(block=False)  # all four in one read, in one batch
    for i in range(1, 3 * s.max_claims):  # each restart a new process, a new consumer name
        time.sleep(0.1)
        try:
            Worker(r, s, consumer=f"w-{i}").claim_idle()
        except Crash:
            crashes += 1
            continue
        break
    # the whole batch went down with it each time, but only the culprit's deliveries passed the
    # limit: claimed alone before each attempt, it climbed twice as fast and the others went first
    assert reasons(r, s) == [max_claims_reason(s.max_claims + 1, s)], crashes
    assert record(dead_letters(r, s)[0])["entry_id"] == poison_id
    assert count(r, s, "dialogue_open", day_of_ms(ts)) == 3
    assert count(r, s, "command_executed", day_of_ms(ts)) == 0
    assert pending_total(r, s) == 0 and r.hlen(keyspace.failures(0)) == 0
