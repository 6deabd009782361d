"""Rate limits (shared through Redis, also across two collector processes), backpressure and the
recent-events debug buffer, on a real server."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import msgspec
import pytest
import redis
from starlette.testclient import TestClient

from collector.app import create_app
from infra import tokens
from schemas import keyspace
from schemas.catalog import STORED_ENCODER, STORED_LIST_DECODER, StoredEvent
from schemas.settings import Settings
from tests import services
from tests.conftest import BACKENDS, JWT_SECRET, WRITE_KEY
from tests.test_collector_support import HEADERS, ROUTE, batch, client, event, stored

OTHER_KEY = "other-key"


def _window(resp) -> int:
    return int(resp.headers["x-server-time"]) // 60_000


def in_one_window(r: redis.Redis, attempt):
    """Run ``attempt`` until all its responses fall in one rate-limit minute (a boundary resets it)."""
    for _ in range(5):
        r.flushdb()
        responses = attempt()
        if len({_window(resp) for resp in responses}) == 1:
            return responses
    raise AssertionError("could not stay inside one minute window")


def test_rate_limit_per_write_key_and_per_ip(env, r, rng):
    settings = Settings.from_env({**env, "RATE_LIMIT_PER_MINUTE": "3"})
    app = create_app(settings)

    def send(ip: str, key: str):
        with TestClient(app, client=(ip, 1234)) as c:
            return c.post(ROUTE, headers={**HEADERS, "X-Write-Key": key},
                          content=json.dumps(batch([event(rng)])))

    def attempt():
        return [
            send("198.51.100.1", WRITE_KEY), send("198.51.100.2", WRITE_KEY),
            send("198.51.100.3", WRITE_KEY),
            send("198.51.100.4", WRITE_KEY),  # the key's fourth request: over its limit
            send("198.51.100.4", OTHER_KEY), send("198.51.100.4", OTHER_KEY),
            send("198.51.100.4", OTHER_KEY),  # the IP's fourth request: over its limit
            send("198.51.100.5", OTHER_KEY),  # the other key's fourth: over
        ]

    responses = in_one_window(r, attempt)
    codes = [resp.status_code for resp in responses]
    assert codes == [202, 202, 202, 429, 202, 202, 429, 429], codes
    for resp in responses:
        if resp.status_code == 429:
            assert resp.json()["error"] == "rate_limited"
            assert 1 <= int(resp.headers["retry-after"]) <= 60


def test_failed_logins_count_against_the_ip(env, r, rng):
    settings = Settings.from_env({**env, "RATE_LIMIT_PER_MINUTE": "2"})

    def attempt():
        with TestClient(create_app(settings), client=("203.0.113.9", 1)) as c:
            wrong = {**HEADERS, "X-Write-Key": "guess"}
            return [c.post(ROUTE, headers=wrong, content=b"{}") for _ in range(3)] + [
                c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([event(rng)])))]

    codes = [resp.status_code for resp in in_one_window(r, attempt)]
    assert codes == [401, 401, 429, 429]


def test_rate_limit_is_shared_by_two_collector_processes(env, r, rng):
    limit = 6
    procs = [services.collector({**env, "RATE_LIMIT_PER_MINUTE": str(limit)}) for _ in range(2)]
    try:
        def attempt():
            out = []
            with httpx.Client(timeout=10) as c:
                for i in range(2 * limit):
                    out.append(c.post(procs[i % 2].url + ROUTE, headers=HEADERS,
                                      content=json.dumps(batch([event(rng)]))))
            return out

        responses = in_one_window(r, attempt)
    finally:
        for p in procs:
            p.stop()
    codes = [resp.status_code for resp in responses]
    assert codes.count(202) == limit and codes.count(429) == limit, codes
    assert codes[:limit] == [202] * limit  # each process alone saw only half: they shared one count
    assert all("retry-after" in resp.headers for resp in responses[limit:])
    assert all("date" in resp.headers for resp in responses)  # real server: Date and X-Server-Time


def _drain(r: redis.Redis, settings: Settings) -> None:
    for shard in range(settings.stream_shards):
        name = keyspace.stream(shard)
        if r.exists(name):
            try:
                r.xgroup_create(name, settings.consumer_group, id="0")
            except redis.ResponseError:
                pass
            r.xreadgroup(settings.consumer_group, "test", {name: ">"}, count=10_000)


def test_backpressure_on_undelivered_backlog(env, r, rng):
    over = {"BACKPRESSURE_MAX_LAG": "2", "BACKPRESSURE_CHECK_MS": "0", "STREAM_SHARDS": "1"}
    settings = Settings.from_env({**env, **over})
    with client(env, **over) as c:
        send = lambda: c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([event(rng)])))  # noqa: E731
        codes = [send().status_code for _ in range(3)]
        refused = send()
        _drain(r, settings)
        again = send()
    assert codes == [202, 202, 202]
    assert refused.status_code == 503 and refused.json()["error"] == "backpressure"
    assert int(refused.headers["retry-after"]) >= 1
    assert again.status_code == 202
    assert len(stored(r, settings)) == 4


def test_backpressure_on_redis_memory(env, r, rng):
    with client(env, BACKPRESSURE_MAX_MEMORY_BYTES="1", BACKPRESSURE_CHECK_MS="0") as c:
        resp = c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([event(rng)])))
    assert resp.status_code == 503 and resp.json()["error"] == "backpressure"
    assert "retry-after" in resp.headers
    assert not any(r.scan_iter(keyspace.STREAM_PATTERN))


def test_backpressure_verdict_is_cached_between_probes(env, r, rng):
    over = {"BACKPRESSURE_MAX_LAG": "1", "BACKPRESSURE_CHECK_MS": "600000", "STREAM_SHARDS": "1"}
    with client(env, **over) as c:
        codes = [c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([event(rng)]))).status_code
                 for _ in range(4)]
    # the first probe saw an empty stream; no other probe runs within the interval
    assert codes == [202] * 4


def test_debug_buffer_keeps_the_last_events_pseudonymised_for_admins(env, r, rng):
    over = {"DEBUG_BUFFER_SIZE": "3", "DEBUG_BUFFER_TTL_SECONDS": "120", "STREAM_SHARDS": "1"}
    events = [event(rng) for _ in range(5)]
    admin = tokens.issue(JWT_SECRET, "admin")
    staff = tokens.issue(JWT_SECRET, "staff")
    route = "/internal/analytics/debug/recent-events"
    with client(env, **over) as c:
        for ev in events:
            c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([ev])))
        c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([events[4]])))  # a duplicate
        shown = c.get(route, headers={"Authorization": f"Bearer {admin}"})
        forbidden = c.get(route, headers={"Authorization": f"Bearer {staff}"})
        anonymous = c.get(route)
        limited = c.get(route + "?limit=1", headers={"Authorization": f"Bearer {admin}"})
    assert forbidden.status_code == 403 and anonymous.status_code == 401
    assert shown.json()["ttl_seconds"] == 120
    got = shown.json()["events"]
    assert [e["event_id"] for e in got] == [
        uuid.UUID(ev["event_id"]).hex for ev in reversed(events[2:])]
    raw_ids = {ev["anon_village_id"] for ev in events}
    assert all(e["village"] not in raw_ids and len(e["village"]) == 24 for e in got)
    assert all(e["server_received_ts"] == e["received"] for e in got)
    assert limited.json()["events"] == got[:1]
    # a view of the stream: no copy of the events is kept anywhere else
    assert not r.exists(keyspace.recent(0))
    with client(env, **{**over, "DEBUG_BUFFER_SIZE": "0"}) as c:  # off
        off = c.get(route, headers={"Authorization": f"Bearer {admin}"})
    assert off.status_code == 200 and off.json()["events"] == []


@pytest.mark.parametrize("redis_url", BACKENDS, indirect=True)
def test_debug_view_shows_each_stored_event_once_and_none_past_its_ttl(env, r, rng):
    """The view reads the shard streams' newest entries (one XREVRANGE per shard, so on a cluster
    too): a resend, or an event twice in one request, shows once; events that arrived more than
    DEBUG_BUFFER_TTL_SECONDS ago do not show; across shards, newest first."""
    over = {"DEBUG_BUFFER_SIZE": "50", "DEBUG_BUFFER_TTL_SECONDS": "60", "STREAM_SHARDS": "4"}
    shards = 4
    admin = {"Authorization": f"Bearer {tokens.issue(JWT_SECRET, 'admin')}"}
    route = "/internal/analytics/debug/recent-events"
    earlier = [event(rng) for _ in range(12)]
    with client(env, **over) as c:
        assert c.post(ROUTE, headers=HEADERS, content=json.dumps(batch(earlier))).status_code == 202
    # those arrived two minutes ago: their entries moved back in time (ids and received alike);
    # their dedup records stay, so a resend of them is still a duplicate
    now = int(time.time() * 1000)
    back = 120_000
    old: list[StoredEvent] = []
    for shard in range(shards):
        key = keyspace.stream(shard)
        entries = r.xrange(key)
        r.delete(key)
        for i, (_, fields) in enumerate(entries):
            evs = [msgspec.structs.replace(e, received=e.received - back)
                   for e in STORED_LIST_DECODER.decode(fields[keyspace.ENTRY_EVENTS_B])]
            r.xadd(key, {keyspace.ENTRY_COUNT: len(evs), keyspace.ENTRY_EVENTS: STORED_ENCODER.encode(evs)},
                   id=f"{now - back + i}-0")
            old += evs
    assert len(old) == len(earlier)
    # an entry appended now holding an event that arrived earlier (as an erasure's rewrite of an
    # entry is): shown by its own arrival, so not either
    rewritten = msgspec.structs.replace(old[0], event_id=uuid.uuid4().hex)
    r.xadd(keyspace.stream(0),
           {keyspace.ENTRY_COUNT: 1, keyspace.ENTRY_EVENTS: STORED_ENCODER.encode([rewritten])})

    fresh = [event(rng) for _ in range(10)]
    with client(env, **over) as c:
        # new events with a resend of two earlier ones, and one of the new ones twice
        first = c.post(ROUTE, headers=HEADERS,
                       content=json.dumps(batch(fresh[:6] + earlier[:2] + [fresh[0]]))).json()
        assert first["accepted"] == 6 and first["duplicates"] == 3, first
        for ev in fresh[6:]:
            c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([ev])))
        again = c.post(ROUTE, headers=HEADERS, content=json.dumps(batch(fresh))).json()
        assert again["accepted"] == 0 and again["duplicates"] == len(fresh), again
        shown = c.get(route, headers=admin).json()["events"]
        limited = c.get(route + "?limit=3", headers=admin).json()["events"]
    with client(env, **{**over, "DEBUG_BUFFER_SIZE": "2"}) as c:
        capped = c.get(route, headers=admin).json()["events"]
    hexed = [uuid.UUID(ev["event_id"]).hex for ev in fresh]
    ids = [e["event_id"] for e in shown]
    assert sorted(ids) == sorted(hexed)  # each stored event once; no duplicate, none past the TTL
    received = [e["received"] for e in shown]
    assert received == sorted(received, reverse=True) and min(received) >= now
    assert limited == shown[:3]
    assert capped == shown[:2]  # the size also caps the answer (and the limit)
