"""Closed-day rollups of the session-duration sketches: the same answers as the live hashes (and
as the ground truth of what was sent), one rollup per closed day, and backfill invalidates them."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from datetime import date

import pytest
import redis
from starlette.testclient import TestClient

from aggregator.worker import Worker
from collector.app import create_app

from aggregator.backfill import backfill
from kinds import session
from infra import tokens
from kinds import rollups
from schemas import keyspace
from infra.connection import open_async
from schemas.days import DAY_MS
from schemas.settings import Settings
from schemas.sketch import Sketch
from scripts.simulate import batch, generate
from tests.conftest import BACKENDS, JWT_SECRET
from tests.kpi_helpers import HOUR, load, truth

def read(settings: Settings, days: list[date], now_ms: int) -> list[Sketch]:
    async def go() -> list[Sketch]:
        ar = await open_async(settings.redis_url)
        try:
            return await session.sketches_per_day(ar, settings, days, now_ms)
        finally:
            await ar.aclose()
    return asyncio.run(go())


def send(settings: Settings, r: redis.Redis, events: list[dict]) -> None:
    """Through the admin import path (history: never late), then a burst worker."""
    admin = {"Authorization": "Bearer " + tokens.issue(JWT_SECRET, role="admin")}
    with TestClient(create_app(settings)) as c:
        for i in range(0, len(events), 400):
            assert c.post("/internal/analytics/import", json=batch(events[i : i + 400]),
                          headers=admin).status_code == 202
    Worker(r, settings, consumer="import").run(burst=True)


def expected(durations: list[int]) -> Sketch:
    sk = Sketch()
    for d in durations:
        sk.add(d)
    return sk


def same(a: Sketch, b: Sketch) -> bool:
    return (a.n, a.sum_ms, a.zero, {i: c for i, c in a.buckets.items() if c}) == (
        b.n, b.sum_ms, b.zero, {i: c for i, c in b.buckets.items() if c})


@pytest.mark.parametrize("redis_url", BACKENDS, indirect=True)
def test_rollups_answer_as_the_live_hashes_and_backfill_drops_them(
    settings: Settings, r: redis.Redis, rng: random.Random
) -> None:
    now = int(time.time() * 1000)
    events = generate(40, 300, now - 40 * HOUR, now - 3 * HOUR, rng.randrange(1 << 30))
    load(settings, settings.redis_url, events)
    t = truth(events)
    days = sorted(date.fromisoformat(d) for d in t.durations)
    assert len(days) >= 2
    truths = [expected(t.durations[d.isoformat()]) for d in days]

    # open days: live, no rollup written
    assert all(same(a, b) for a, b in zip(read(settings, days, now), truths))
    assert not r.exists(*[keyspace.session_rollup(d.isoformat()) for d in days])

    # once closed: the first read writes one rollup per day, the next reads answer from them
    later = now + 10 * DAY_MS
    assert all(same(a, b) for a, b in zip(read(settings, days, later), truths))
    assert r.exists(*[keyspace.session_rollup(d.isoformat()) for d in days]) == len(days)
    assert r.ttl(keyspace.session_rollup(days[0].isoformat())) > 0
    # prove the second read comes from the rollups: damage a live hash, the answer does not move
    victim = days[0].isoformat()
    r.hset(keyspace.session_sketch(0, victim), "n", 999_999)
    assert all(same(a, b) for a, b in zip(read(settings, days, later), truths))

    # backfill of the damaged day rebuilds the hash and drops its rollup; others stay
    backfill(r, settings, days[0], days[0])
    assert r.get(keyspace.session_rollup(victim)) == rollups.STALE
    assert r.get(keyspace.session_rollup(days[-1].isoformat()))
    # while marked stale, reads go live and store nothing (a read that fetched the hashes before
    # the rebuild cannot store its merge over the mark: SET NX)
    assert all(same(a, b) for a, b in zip(read(settings, days, later), truths))
    assert r.get(keyspace.session_rollup(victim)) == rollups.STALE
    assert 0 < r.ttl(keyspace.session_rollup(victim)) <= rollups.STALE_SECONDS
    r.delete(keyspace.session_rollup(victim))  # the mark expired
    assert all(same(a, b) for a, b in zip(read(settings, days, later), truths))
    assert r.get(keyspace.session_rollup(victim))
    assert all(same(a, b) for a, b in zip(read(settings, days, later), truths))


@pytest.mark.parametrize("redis_url", BACKENDS, indirect=True)
def test_a_history_import_into_a_closed_day_drops_its_rollup(
    settings: Settings, r: redis.Redis, rng: random.Random
) -> None:
    now = int(time.time() * 1000)

    first = generate(20, 80, now - 12 * DAY_MS, now - 10 * DAY_MS, rng.randrange(1 << 30))
    send(settings, r, first)
    t = truth(first)
    days = sorted(date.fromisoformat(d) for d in t.durations)
    got = read(settings, days, now)  # closed days: rolled up now
    assert all(same(a, expected(t.durations[d.isoformat()])) for a, d in zip(got, days))
    assert r.exists(*[keyspace.session_rollup(d.isoformat()) for d in days]) == len(days)

    more = generate(20, 80, now - 12 * DAY_MS, now - 10 * DAY_MS, rng.randrange(1 << 30))
    send(settings, r, more)
    t = truth(first + more)
    assert r.mget([keyspace.session_rollup(d.isoformat()) for d in days]) == [rollups.STALE] * len(days)
    got = read(settings, days, now)
    assert all(same(a, expected(t.durations[d.isoformat()])) for a, d in zip(got, days))


def test_encoding_round_trips(rng: random.Random) -> None:
    sk = expected([rng.randrange(0, 4 * 3_600_000) for _ in range(2000)] + [0, 0])
    back = Sketch()
    back.absorb_encoded(sk.encode())
    assert same(back, sk)
    empty = Sketch()
    empty.absorb_encoded(Sketch().encode())
    assert same(empty, Sketch())


def test_quantiles_of_a_decoded_rollup_are_within_alpha_of_the_exact_ones(rng: random.Random) -> None:
    from schemas.sketch import ALPHA, exact_quantile
    values = [rng.randrange(1, 6 * 3_600_000) for _ in range(5000)] + [0] * 50
    back = Sketch()
    back.absorb_encoded(expected(values).encode())
    for q in (0.0, 0.01, 0.5, 0.95, 1.0):
        want = exact_quantile(values, q)
        got = back.quantile_ms(q)
        assert (got == want == 0) or abs(got - want) <= ALPHA * want * 1.0001, (q, got, want)


@pytest.mark.parametrize("redis_url", BACKENDS, indirect=True)
def test_the_kpi_api_drops_its_cached_closed_days_after_an_import(
    settings: Settings, r: redis.Redis, rng: random.Random
) -> None:
    """A closed day's answer is cached for KPI_CACHE_CLOSED_SECONDS; an import that changes the day
    must not be hidden behind it: within REFRESH_S the API answers from the new aggregates."""
    from kpi_api.app import create_app as create_kpi_api
    from schemas.adjusted import REFRESH_S

    now = int(time.time() * 1000)
    staff = {"Authorization": "Bearer " + tokens.issue(JWT_SECRET, role="staff")}
    clock = [now / 1000]

    first = generate(15, 60, now - 12 * DAY_MS, now - 11 * DAY_MS, rng.randrange(1 << 30))
    send(settings, r, first)
    days = sorted({e["ts_utc"][:10] for e in first})
    path = f"/internal/analytics/kpis/daily-active-villages?start={days[0]}&end={days[-1]}"
    with TestClient(create_kpi_api(settings, clock=lambda: clock[0])) as api:
        before = api.get(path, headers=staff)
        assert before.status_code == 200 and before.headers["X-Cache"] == "miss"
        assert [row["value"] for row in before.json()] == [len(truth(first).villages[d]) for d in days]
        clock[0] += REFRESH_S + 1
        assert api.get(path, headers=staff).headers["X-Cache"] == "hit"  # nothing changed: still cached

        more = generate(15, 60, now - 12 * DAY_MS, now - 11 * DAY_MS, rng.randrange(1 << 30))
        send(settings, r, more)
        clock[0] += REFRESH_S + 1
        after = api.get(path, headers=staff)
        assert after.headers["X-Cache"] == "miss"
        expect = truth(first + more)
        assert [row["value"] for row in after.json()] == [len(expect.villages[d]) for d in days]
        assert after.json() != before.json()


@pytest.mark.parametrize("redis_url", BACKENDS, indirect=True)
def test_every_kind_reads_closed_days_from_rollups_and_imports_and_purges_drop_them(
    settings: Settings, r: redis.Redis, rng: random.Random
) -> None:
    """Closed days of every kind come from the KPI's rollup hash (equal to the live answer and to
    the ground truth of what was sent); an import into those days and a purge make reads go live."""
    from collections import Counter

    from aggregator.purge import purge
    from kpi_api.app import create_app as create_kpi_api

    now = int(time.time() * 1000)
    staff = {"Authorization": "Bearer " + tokens.issue(JWT_SECRET, role="staff")}
    settings = dataclasses.replace(settings, kpi_cache_seconds=0, kpi_cache_closed_seconds=0,
                                   kpi_min_group_size=1)

    def expected(events: list[dict]) -> dict[str, list]:
        t = truth(events)
        by_command: Counter[tuple[str, str]] = Counter()
        for e in events:
            if e["event_name"] == "command_executed" and e["ts_utc"][:10] in days:  # the range read
                by_command[(e["ts_utc"][:10], e["payload"]["command"])] += 1
        return {
            "daily-active-villages": [len(t.villages[d]) for d in days],
            "dialogue-opens": [t.counts[d]["dialogue_open"] for d in days],
            "events": [sum(t.counts[d].values()) for d in days],
            "commands-by-name": sorted((d, c, n) for (d, c), n in by_command.items()),
        }

    def matches(got: dict[str, list], want: dict[str, list]) -> bool:
        """Exact, but for the daily actors: an HLL may put two of a few actors in one register."""
        dau_ok = all(abs(a - b) <= 1 for a, b in zip(got["daily-active-villages"], want["daily-active-villages"]))
        return dau_ok and {k: v for k, v in got.items() if k != "daily-active-villages"} == {
            k: v for k, v in want.items() if k != "daily-active-villages"}

    def answers(api: TestClient) -> dict[str, list]:
        out = {}
        for name in ("daily-active-villages", "dialogue-opens", "events"):
            resp = api.get(f"/internal/analytics/kpis/{name}?{span}", headers=staff)
            assert resp.status_code == 200 and resp.headers["X-Cache"] == "miss"
            out[name] = [row["value"] for row in resp.json()]
        rows = api.get(f"/internal/analytics/kpis/commands-by-name?{span}&group_by=command", headers=staff).json()
        out["commands-by-name"] = sorted((row["date"], row["command"], row["value"]) for row in rows if row["value"])
        return out

    first = generate(15, 60, now - 12 * DAY_MS, now - 10 * DAY_MS, rng.randrange(1 << 30))
    send(settings, r, first)
    days = sorted({e["ts_utc"][:10] for e in first})
    span = f"start={days[0]}&end={days[-1]}"
    with TestClient(create_kpi_api(settings)) as api:
        live = answers(api)  # computed live, rolled up
        assert matches(live, expected(first))
        for name in ("@actors", "@counts", "commands-by-name"):
            assert r.hlen(keyspace.rollup(name)) >= len(days), name
        # prove the next read comes from the rollups: damage the live aggregates, nothing moves
        saved = {k: r.dump(k) for k in r.keys(f"{keyspace.PREFIX}:{{s*}}:counts:*")}
        r.delete(*saved)
        assert answers(api) == live
        for k, blob in saved.items():
            r.restore(k, 0, blob)

        more = generate(15, 60, now - 12 * DAY_MS, now - 10 * DAY_MS, rng.randrange(1 << 30))
        send(settings, r, more)  # an import into closed days: the rollups computed before it are ignored
        assert matches(answers(api), expected(first + more))

        report = purge(r, dataclasses.replace(settings, metrics_retention_days=3), None, 3)
        assert report["aggregates"]["keys"] > 0
        assert not r.exists(*[keyspace.rollup(n) for n in ("@actors", "@counts", "commands-by-name")])
        zero = answers(api)
        assert zero["daily-active-villages"] == [0] * len(days) and zero["commands-by-name"] == []


def test_days_past_the_metrics_retention_are_not_served_from_rollups(
    settings: Settings, r: redis.Redis, rng: random.Random
) -> None:
    """A day's aggregates expire METRICS_RETENTION_DAYS after their last write (an admin may lower
    the setting at run time); its rollups, kept in hashes that every read refreshes, must not keep
    serving it after that: such a day reads as the live keys say."""
    from kpi_api.app import create_app as create_kpi_api

    now = int(time.time() * 1000)
    staff = {"Authorization": "Bearer " + tokens.issue(JWT_SECRET, role="staff")}
    settings = dataclasses.replace(settings, kpi_cache_seconds=0, kpi_cache_closed_seconds=0,
                                   kpi_min_group_size=1)
    events = generate(15, 60, now - 12 * DAY_MS, now - 10 * DAY_MS, rng.randrange(1 << 30))
    send(settings, r, events)
    days = sorted({e["ts_utc"][:10] for e in events})
    span = f"start={days[0]}&end={days[-1]}"
    names = ("daily-active-villages", "weekly-active-villages", "dialogue-opens", "events", "session-duration")

    def answers(s: Settings) -> dict[str, list]:
        with TestClient(create_kpi_api(s)) as api:
            out = {n: [row["value"] for row in api.get(f"/internal/analytics/kpis/{n}?{span}", headers=staff).json()]
                   for n in names}
            # the range's total merges the days' sketches: from the sketch rollups
            out["sketch"] = [api.get(f"/internal/analytics/kpis/session-duration/summary?{span}",
                                     headers=staff).json()["total"]]
            return out

    r.delete(*[keyspace.session_rollup(d) for d in days])  # the import's stale marks, as after a minute
    kept = answers(settings)  # within the retention (365 days): rolled up
    assert r.exists(*[keyspace.session_rollup(d) for d in days]) == len(days)
    assert all(any(v) for v in kept.values()), kept
    assert answers(settings) == kept
    # the days' keys expire (their TTL, or a retention lowered to 9 days at run time)
    for key in r.scan_iter(match=keyspace.SHARD_KEYS, count=1000):
        if any(key.decode().endswith(d) for d in days) and b"rollup" not in key:
            r.delete(key)
    gone = answers(dataclasses.replace(settings, metrics_retention_days=9))
    assert gone == {**{n: [0] * len(days) for n in names}, "sketch": [0]}, gone
