"""A redelivered stream entry is applied once: the apply script XACKs first and skips if not pending."""

from __future__ import annotations

import random
import time

import pytest
import redis
from starlette.testclient import TestClient

from aggregator.worker import Worker, ensure_groups
from collector.app import create_app
from schemas import keyspace
from schemas.settings import Settings
from scripts.simulate import batch, generate
from tests.streamfeed import read_as
from tests.conftest import BACKENDS, WRITE_KEY

# the core pipeline tests run on a single node and on a 3-master cluster
pytestmark = pytest.mark.parametrize("redis_url", BACKENDS, indirect=True)


def _counts(r: redis.Redis, settings: Settings) -> dict[bytes, int]:
    total: dict[bytes, int] = {}
    for key in r.scan_iter(match=f"{keyspace.PREFIX}:*:counts:*"):
        for field, value in r.hgetall(key).items():
            total[field] = total.get(field, 0) + int(value)
    return total


def test_stale_consumer_cannot_apply_a_claimed_entry(
    r: redis.Redis, settings: Settings, rng: random.Random
) -> None:
    now = int(time.time() * 1000)
    events = generate(20, 60, now - 20 * 3_600_000, now - 5 * 3_600_000, rng.randrange(1 << 30))
    ensure_groups(r, settings)
    with TestClient(create_app(settings)) as c:
        assert c.post("/api/analytics/events", json=batch(events), headers={"X-Write-Key": WRITE_KEY}).status_code == 202

    stale = Worker(r, settings, consumer="stale")
    rescuer = Worker(r, settings, consumer="rescuer")
    delivered = [(name.encode(), entries) for name, entries in read_as(r, settings, "stale")]
    assert delivered, "the stale consumer got nothing to hold"
    # the stale consumer 'hangs'; the rescuer claims everything it holds and applies it
    for name, entries in delivered:
        ids = [eid for eid, _ in entries]
        claimed = r.xclaim(name, settings.consumer_group, "rescuer", min_idle_time=0, message_ids=ids)
        rescuer.process(name.decode(), claimed)
    once = _counts(r, settings)
    assert sum(v for k, v in once.items() if b"@" not in k) == len(events)
    # the stale consumer wakes up and applies its copies: nothing changes
    for name, entries in delivered:
        stale.process(name.decode(), entries)
    assert _counts(r, settings) == once
    assert all(
        r.xpending(keyspace.stream(s), settings.consumer_group)["pending"] == 0
        for s in range(settings.stream_shards)
    )
