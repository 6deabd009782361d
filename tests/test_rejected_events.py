"""What a rejected event leaves in Redis, through the real collector: a redacted dead-letter copy
that keeps only what the catalog declares as safe, and nothing else (no salt for an epoch of the
client's choosing, no key that outlives the retention settings)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import redis

from schemas import keyspace
from schemas.days import DAY_MS
from schemas.settings import Settings
from tests import services
from tests.test_collector_support import HEADERS, ROUTE, batch, dead_letters, event, iso
from tests.test_privacy_collector import everything

UA = "Mozilla/5.0 (X11; Linux x86_64; secret-device-model-ZZ9) Gecko/20100101"
RATE_LIMITS = keyspace.rate_limit("\0", 0).split("\0")[0]


@pytest.fixture
def collector(env: dict[str, str], r: redis.Redis) -> Iterator[services.Service]:
    svc = services.collector(env)
    yield svc
    svc.stop()


def post(svc: services.Service, events: list[dict[str, object]]) -> dict[str, object]:
    resp = httpx.post(svc.url + ROUTE, headers=HEADERS, content=json.dumps(batch(events)), timeout=30)
    assert resp.status_code == 202, resp.text
    return resp.json()


def test_the_dead_letter_copy_keeps_only_declared_safe_values(collector, r, rng):  # type: ignore[no-untyped-def]
    hostile = [
        event(rng, anon_village_id={"id": "RAW"}),
        event(rng, village_id="RAW", ts_utc="never"),
        event(rng, user={"id": "RAW"}, ts_utc="never"),
        event(rng, sessionId="RAW", ts_utc="never"),
        event(rng, client_ip="10.1.2.3", ts_utc="never"),
        event(rng, context={"user_agent": UA}, ts_utc="never"),
        event(rng, "dialogue_open", payload={"dialogue_id": "no spaces allowed", "user_id": "RAW",
                                             "ip": "10.1.2.3"}),
        event(rng, "village_upgraded", anon_village_id="RAW"),  # unknown event: its id still hashed
    ]
    body = post(collector, hostile)
    assert body["accepted"] == 0 and len(body["rejected"]) == len(hostile)

    blob = b"\n".join(everything(r))
    assert b"<undeclared 1>" in blob  # the copies are there, keys replaced
    for needle in (b"RAW", b"10.1.2.3", UA.encode(), b"secret-device-model", b"no spaces allowed"):
        assert needle not in blob, needle
    copies = [rec["event"] for _, rec in dead_letters(r)]
    assert len(copies) == len(hostile)
    # what is declared and safe stays: pseudonyms, event ids, tokens
    assert copies[0]["anon_village_id"] == "<redacted object of 1 fields>"
    assert copies[1]["anon_village_id"].startswith("pseudo:")
    assert copies[1]["event_id"] == hostile[1]["event_id"]
    assert copies[6]["payload"]["dialogue_id"] == "<redacted 17 chars>"
    assert copies[2]["app_version"] == "1.4.2" and copies[2]["event_name"] == "village_active"


def ttl_bound_ms(s: Settings) -> int:
    """The longest any key may live: aggregates, raw events, or one salt epoch and its late window."""
    salt = s.salt_rotation_days * DAY_MS + s.late_window_ms + DAY_MS
    return max(s.metrics_retention_days * DAY_MS, s.analytics_retention_days * DAY_MS, salt)


def keys(r: redis.Redis) -> set[bytes]:
    return {k for k in r.scan_iter(count=1000) if not k.decode().startswith(RATE_LIMITS)}


def test_rejected_events_create_nothing_but_their_dead_letter_copy(collector, r, settings, rng):  # type: ignore[no-untyped-def]
    post(collector, [event(rng)])  # the pipeline's own keys for today: salt, markers, stream
    before = keys(r)
    far = datetime(3000, 1, 1, tzinfo=timezone.utc)
    future = [event(rng, ts_utc=iso(far + timedelta(days=31 * i))) for i in range(300)]
    old = [event(rng, ts_utc=iso(datetime(1500, 1, 1, tzinfo=timezone.utc) + timedelta(days=31 * i)),
                 platform="NOT VALID") for i in range(20)]
    for chunk in (future[:150], future[150:], old):
        body = post(collector, chunk)
        assert body["accepted"] == 0 and len(body["rejected"]) == len(chunk)
    assert {x["errors"][0].split(":")[0] for x in body["rejected"]} == {
        f"$.events[{i}].platform" for i in range(20)}
    assert keys(r) - before == {keyspace.DEAD_LETTER.encode()}
    assert r.xlen(keyspace.DEAD_LETTER) == 320

    bound = ttl_bound_ms(settings)
    too_long = [(k, ttl) for k in r.scan_iter(count=1000) if (ttl := r.pttl(k)) > bound]
    assert too_long == []
