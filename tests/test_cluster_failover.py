"""A master dies mid-ingest: with ANALYTICS_WAIT_REPLICAS=1 nothing acknowledged is lost.

The test's own cluster (it is broken on purpose). Clients resend on 5xx as the SDKs do; the
master of shard 0 is SIGKILLed half-way, its replica is promoted, the dead node is started again
(it rejoins as the new master's replica, so WAIT can be satisfied again); after the workers
drain, every daily count equals the ground truth and daily actives are within HLL error.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import httpx

from schemas import keyspace
from infra.connection import open_sync
from schemas.settings import Settings
from scripts.simulate import generate
from tests import services
from tests.cluster import Cluster
from tests.conftest import JWT_SECRET, WRITE_KEY
from tests.kpi_helpers import truth

HOUR = 3_600_000


def _send(c: httpx.Client, events: list[dict[str, Any]], deadline: float, heal: Any) -> int:
    """POST until a 2xx (resending on 5xx and transport errors, like an SDK); the 5xx count.
    ``heal()`` runs after a few failures (the operator restarting the dead node)."""
    failures = 0
    while True:
        body = {"sent_at": datetime.now(timezone.utc).isoformat(), "events": events}
        try:
            resp = c.post("/api/analytics/events", json=body)
            if resp.status_code == 202:
                assert resp.json()["rejected"] == []
                return failures
            assert resp.status_code >= 500, resp.text
        except httpx.TransportError:
            pass
        failures += 1
        if failures == 15:
            heal()
        assert time.monotonic() < deadline, "the collector never recovered"
        time.sleep(0.2)


def test_master_killed_mid_ingest_loses_nothing_acknowledged(rng: random.Random) -> None:
    cluster = Cluster(node_timeout_ms=1000)
    collector = kpi = None
    workers: list[services.Service] = []
    try:
        env = {"REDIS_URL": cluster.url, "ANALYTICS_WRITE_KEYS": WRITE_KEY,
               "JWT_SECRET_KEY": JWT_SECRET, "LOG_LEVEL": "WARNING", "BLOCK_MS": "200",
               "ANALYTICS_WAIT_REPLICAS": "1", "ANALYTICS_WAIT_TIMEOUT_MS": "500",
               "RECONNECT_MAX_SECONDS": "1", "LATE_WINDOW_HOURS": "72"}
        settings = Settings.from_env(env)
        now = int(time.time() * 1000)
        sent = generate(villages=300, sessions=900, start_ms=now - 30 * HOUR, end_ms=now - 2 * HOUR,
                        seed=rng.randrange(1 << 30))
        rng.shuffle(sent)
        batches = [sent[i : i + 100] for i in range(0, len(sent), 100)]
        collector = services.collector(env)
        workers = [services.aggregator(env, f"fo-{i}") for i in range(2)]
        victim = cluster.master_of(keyspace.stream(0))
        deadline = time.monotonic() + 90
        failures = 0
        with httpx.Client(base_url=collector.url, headers={"X-Write-Key": WRITE_KEY}, timeout=30) as c:
            for i, batch in enumerate(batches):
                if i == len(batches) // 2:
                    victim.kill()
                # an operator restarts the dead node: it rejoins as the new master's replica
                failures += _send(c, batch, deadline, lambda: victim.proc or victim.start())
            if victim.proc is None:
                victim.start()
        assert failures > 0, "the kill was never noticed: no failover was tested"
        cluster.wait_ok(timeout=60)
        client = open_sync(cluster.url)
        services.wait_drained(client, settings, timeout=90)
        t = truth(sent)
        for d, expected in t.counts.items():
            got: Counter[str] = Counter()
            for shard in range(settings.stream_shards):
                for k, v in client.hgetall(keyspace.counts(shard, d)).items():
                    if b"@" not in k:
                        got[k.decode()] += int(v)
            assert got == expected, d  # nothing lost, nothing counted twice
            actives = sum(int(client.execute_command("PFCOUNT", keyspace.dau(shard, d)))
                          for shard in range(settings.stream_shards))
            assert abs(actives - len(t.villages[d])) <= max(2, 0.02 * len(t.villages[d]))
        client.close()
    finally:
        for w in workers:
            w.stop()
        if collector is not None:
            collector.stop()
        cluster.stop()
