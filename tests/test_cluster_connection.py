"""The connection factory on a real cluster: explicit ``redis+cluster://`` URLs, a plain URL of a
cluster node detected as a cluster, single nodes left alone, and the services ready on both."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from schemas import keyspace
from schemas.catalog import STORED_LIST_DECODER
from infra.connection import open_async, open_sync, split_cluster_url
from schemas.settings import Settings
from scripts.simulate import generate
from tests import services
from tests.cluster import Cluster
from tests.conftest import BACKENDS, WRITE_KEY


def test_cluster_urls_name_every_startup_node() -> None:
    first, nodes = split_cluster_url("redis+cluster://u:pw@10.0.0.1:7000,10.0.0.2:7001/?protocol=3")
    assert first == "redis://u:pw@10.0.0.1:7000/?protocol=3"
    assert nodes == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    first, nodes = split_cluster_url("rediss+cluster://h:6380")
    assert first == "rediss://h:6380" and nodes == [("h", 6380)]
    assert split_cluster_url("redis://h:6379/0") is None
    with pytest.raises(SystemExit, match="host:port"):
        split_cluster_url("redis+cluster://h:6379,nohost")


def test_both_url_forms_give_a_cluster_client_single_node_stays_plain(
    cluster: Cluster, single_url: str
) -> None:
    for url in (cluster.url, cluster.plain_url):
        client = open_sync(url)
        assert isinstance(client, RedisCluster), url
        # keys of every shard land on their own masters: no MOVED reaches the caller
        for shard in range(8):
            client.set(keyspace.shard_stats(shard), b"x")
            assert client.get(keyspace.shard_stats(shard)) == b"x"
        client.close()
    plain = open_sync(single_url)
    assert not isinstance(plain, RedisCluster)
    plain.close()

    async def both() -> None:
        for url in (cluster.url, cluster.plain_url):
            client = await open_async(url)
            assert isinstance(client, AsyncRedisCluster), url
            for shard in range(8):
                await client.set(keyspace.shard_stats(shard), b"y")
            await client.aclose()
    asyncio.run(both())


@pytest.mark.parametrize("redis_url", BACKENDS, indirect=True)
def test_collector_ready_and_storing_on_both(env: dict[str, str], r: Any, rng: random.Random) -> None:
    """Every event lands in a shard stream (on its own master on a cluster), a resend is
    answered as duplicates, and /readyz says ready only when the store is usable."""
    settings = Settings.from_env(env)
    now = int(time.time() * 1000)
    sent = generate(villages=40, sessions=60, start_ms=now - 4 * 3_600_000, end_ms=now - 2 * 3_600_000,
                    seed=rng.randrange(1 << 30))
    col = services.collector(env)
    try:
        assert httpx.get(col.url + "/readyz").json()["status"] == "ready"
        with httpx.Client(base_url=col.url, headers={"X-Write-Key": WRITE_KEY}) as c:
            body = {"sent_at": datetime.now(timezone.utc).isoformat(), "events": sent}
            first = c.post("/api/analytics/events", json=body)
            assert first.status_code == 202, first.text
            assert first.json()["rejected"] == [] and first.json()["accepted"] == len(sent), first.text[:500]
            body["sent_at"] = datetime.now(timezone.utc).isoformat()
            again = c.post("/api/analytics/events", json=body).json()
            assert again["accepted"] == 0 and again["duplicates"] == len(sent), again
    finally:
        col.stop()
    stored = {}
    for shard in range(settings.stream_shards):
        for _, fields in r.xrange(keyspace.stream(shard)):
            for ev in STORED_LIST_DECODER.decode(fields[keyspace.ENTRY_EVENTS_B]):
                stored[ev.event_id] = ev
    assert len(stored) == len(sent)


def test_shard_map_names_the_master_of_every_shard(cluster: Cluster, single_url: str) -> None:
    import subprocess
    import sys

    env = {"REDIS_URL": cluster.url, "STREAM_SHARDS": "4", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "aggregator.cli", "--shard-map"], env=env,
                         capture_output=True, text=True, check=True).stdout
    for shard in range(4):
        master = cluster.master_of(keyspace.stream(shard))
        assert any(line.split()[:1] == [str(shard)] and master.address in line
                   for line in out.splitlines()), out
    assert "4 shards on 3 master(s)" in out  # with 4 shards, one of 3 masters holds two
    single = subprocess.run([sys.executable, "-m", "aggregator.cli", "--shard-map"],
                            env={**env, "REDIS_URL": single_url}, capture_output=True, text=True,
                            check=True).stdout
    assert "4 shards on 1 master(s)" in single
