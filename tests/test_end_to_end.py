"""Issue 2's acceptance: >= 20,000 events over three UTC days through the running services.

Resent batches, globally shuffled order (ends before starts) and events beyond the late window;
the KPIs served by the KPI API are compared with ground truth computed here from the events sent.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timezone

import httpx
import pytest
import redis

from infra import tokens
from schemas import keyspace
from schemas.settings import Settings
from schemas.sketch import exact_quantile
from scripts.simulate import event, generate
from tests import services
from tests.conftest import BACKENDS, JWT_SECRET, WRITE_KEY
from tests.kpi_helpers import day, ms, truth

HOUR = 3_600_000
WINDOW_H = 72  # wide enough that the on-time events always cover three UTC days

# the core pipeline tests run on a single node and on a 3-master cluster
pytestmark = pytest.mark.parametrize("redis_url", BACKENDS, indirect=True)


def test_pipeline_end_to_end(env: dict[str, str], r: redis.Redis, rng: random.Random) -> None:
    env = {**env, "LATE_WINDOW_HOURS": str(WINDOW_H), "READ_COUNT": "50"}
    settings = Settings.from_env(env)
    now = int(time.time() * 1000)
    on_time = generate(
        villages=600, sessions=2_800, start_ms=now - (WINDOW_H - 2) * HOUR,
        end_ms=now - 5 * HOUR, seed=rng.randrange(1 << 30),
    )
    late_rng = random.Random(rng.random())
    late = [
        event(late_rng.choice(["dialogue_open", "command_executed", "village_active"]),
              f"late-village-{i % 97}", now - (WINDOW_H + 1) * HOUR - late_rng.randint(0, 30 * HOUR),
              None, {"dialogue_id": "elder", "command": "build"}, late_rng)
        for i in range(700)
    ]
    assert len(on_time) >= 20_000
    sent = on_time + late
    rng.shuffle(sent)  # ends arrive before starts, days interleave
    batches = [sent[i : i + 400] for i in range(0, len(sent), 400)]
    resend = set(rng.sample(range(len(batches)), k=len(batches) // 5))

    collector = services.collector(env)
    kpi = services.kpi_api(env)
    workers = [services.aggregator(env, f"e2e-{i}") for i in range(2)]
    try:
        with httpx.Client(base_url=collector.url, headers={"X-Write-Key": WRITE_KEY}, timeout=30) as c:
            order = list(range(len(batches))) + sorted(resend)
            for i in order:
                body = {"batch_id": f"b-{i}", "sent_at": datetime.now(timezone.utc).isoformat(),
                        "events": batches[i]}
                resp = c.post("/api/analytics/events", json=body)
                assert resp.status_code == 202, resp.text
                got = resp.json()
                assert got["rejected"] == []
                assert got["accepted"] + got["duplicates"] == len(batches[i])
            # every resent batch was answered as duplicates only
            again = c.post("/api/analytics/events", json={"events": batches[0]}).json()
            assert again == {"accepted": 0, "duplicates": len(batches[0]), "late": 0, "rejected": []}
        services.wait_drained(r, settings)

        t = truth(on_time)
        days = sorted(set(t.villages) | {day(ms(e["ts_utc"])) for e in late})
        assert len(t.villages) >= 3
        token = tokens.issue(JWT_SECRET, role="staff")
        with httpx.Client(base_url=kpi.url, headers={"Authorization": f"Bearer {token}"}) as k:
            def series(path: str) -> dict[str, float]:
                sep = "&" if "?" in path else "?"
                resp = k.get(f"/internal/analytics/kpis/{path}{sep}start={days[0]}&end={days[-1]}")
                assert resp.status_code == 200, resp.text
                rows = resp.json()
                assert [row["date"] for row in rows] == days  # one row per day, zero-filled
                return {row["date"]: row["value"] for row in rows}

            dialogue = series("dialogue-opens")
            commands = series("command-executions")
            dav = series("daily-active-villages")
            avg = series("session-duration?metric=avg")
            p50 = series("session-duration?metric=p50")
            p95 = series("session-duration?metric=p95")
    finally:
        for w in workers:
            assert w.stop() == 0
        kpi.stop()
        collector.stop()

    for d in days:
        assert dialogue[d] == t.counts[d]["dialogue_open"], d
        assert commands[d] == t.counts[d]["command_executed"], d
        exact = len(t.villages[d])
        assert abs(dav[d] - exact) <= max(0.02 * exact, 0), (d, dav[d], exact)
        durations = t.durations[d]
        if not durations:
            assert avg[d] == p50[d] == p95[d] == 0
            continue
        exact_avg = sum(durations) / len(durations) / 1000
        assert abs(avg[d] - exact_avg) <= 0.005 * exact_avg, (d, avg[d], exact_avg)
        for got, q in ((p50[d], 0.5), (p95[d], 0.95)):
            want = exact_quantile(durations, q) / 1000
            assert abs(got - want) <= 0.02 * want, (d, q, got, want)

    late_kept = 0
    for shard in range(settings.stream_shards):
        for _id, fields in r.xrange(keyspace.late_stream(shard)):
            late_kept += int(fields[keyspace.ENTRY_COUNT_B])
    assert late_kept == len(late)
    stats = [r.hgetall(keyspace.shard_stats(s)) for s in range(settings.stream_shards)]
    assert sum(int(s.get(b"late", 0)) for s in stats) == len(late)
    assert sum(int(s.get(b"applied", 0)) for s in stats) == len(on_time)
