"""Backfill rebuilds days from the retained events: the same KPIs as the live workers, twice over."""

from __future__ import annotations

import random
import time
from datetime import date
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from aggregator.backfill import backfill
from aggregator.worker import Worker
from collector.app import create_app
from schemas import keyspace, profiles
from schemas.settings import Settings
from scripts.seed_traffic import profile_events
from scripts.simulate import batch
from tests.conftest import WRITE_KEY

HOUR = 3_600_000


def snapshot(r: redis.Redis) -> dict[str, Any]:
    """Every aggregate the KPIs read: HLL counts, counter hashes, sketches, top-N tables."""
    out: dict[str, Any] = {}
    for key in r.scan_iter(match=f"{keyspace.PREFIX}:*"):
        name = key.decode()
        if any(part in name for part in (":dau:", ":kpi:", ":counts:", ":sessdur:")):
            kind = r.type(key).decode()
            if kind == "hash":
                out[name] = {k: int(v) for k, v in r.hgetall(key).items()}
            elif kind == "zset":
                out[name] = {m: s for m, s in r.zrange(key, 0, -1, withscores=True) if s}
            else:
                out[name] = r.pfcount(key)
    return out


@pytest.mark.parametrize("profile", ["seed003", "seed000"])
def test_backfill_is_idempotent_and_repairs_a_day(
    profile: str, env: dict[str, str], r: redis.Redis, rng: random.Random
) -> None:
    settings = Settings.from_env({**env, "ANALYTICS_PROFILE": profile})
    now = int(time.time() * 1000)
    events = profile_events(profiles.load(profile), actors=60, count=2_500,
                            start_ms=now - 40 * HOUR, end_ms=now - 5 * HOUR, seed=rng.randrange(1 << 30))
    with TestClient(create_app(settings)) as c:
        for i in range(0, len(events), 500):
            assert c.post("/api/analytics/events", json=batch(events[i : i + 500]),
                          headers={"X-Write-Key": WRITE_KEY}).status_code == 202
    Worker(r, settings, consumer="live").run(burst=True)
    live = snapshot(r)
    assert live, "the workers kept nothing"
    days = sorted({e["ts_utc"][:10] for e in events})  # UTC ("...Z") timestamps
    first, last = date.fromisoformat(days[0]), date.fromisoformat(days[-1])

    result = backfill(r, settings, first, last)
    assert result["events"] == len(events)
    assert snapshot(r) == live
    backfill(r, settings, first, last)
    assert snapshot(r) == live

    # a damaged day is repaired by rebuilding just that day
    broken = days[1]
    for shard in range(settings.stream_shards):
        r.delete(keyspace.counts(shard, broken), keyspace.dau(shard, broken))
        r.hset(keyspace.session_sketch(shard, broken), "n", 999)
    assert snapshot(r) != live
    backfill(r, settings, date.fromisoformat(broken), date.fromisoformat(broken))
    assert snapshot(r) == live


def test_backfill_refuses_while_entries_are_pending(env: dict[str, str], r: redis.Redis) -> None:
    settings = Settings.from_env(env)
    now = int(time.time() * 1000)
    events = profile_events(profiles.load("seed003"), 5, 50, now - 5 * HOUR, now - 4 * HOUR, 3)
    with TestClient(create_app(settings)) as c:
        c.post("/api/analytics/events", json=batch(events), headers={"X-Write-Key": WRITE_KEY})
    with pytest.raises(SystemExit, match="pending"):
        backfill(r, settings, date.today(), date.today())
