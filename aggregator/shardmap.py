"""``analytics-aggregator --shard-map``: which master holds which shard (and its replicas).

On a cluster each shard's keys share the hash tag ``{sN}``, so a shard lives in one slot on one
master; with more shards than masters some masters hold several (``STREAM_SHARDS`` = 4 on 3
masters: one master holds two). A single node holds them all.
"""

from __future__ import annotations

from typing import Any

from redis.cluster import RedisCluster
from redis.crc import key_slot

from schemas import keyspace
from schemas.settings import Settings


def shard_map(client: Any, settings: Settings) -> list[dict[str, Any]]:
    rows = []
    for shard in range(settings.stream_shards):
        stream = keyspace.stream(shard)
        if isinstance(client, RedisCluster):
            slot = key_slot(stream.encode())
            nodes = client.nodes_manager.slots_cache.get(slot, [])
            master = nodes[0].name if nodes else "?"
            replicas = [n.name for n in nodes[1:]]
        else:
            kwargs = client.connection_pool.connection_kwargs
            slot = None
            master = f"{kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')}".rstrip(":")
            replicas = []
        rows.append({"shard": shard, "stream": stream, "slot": slot, "master": master,
                     "replicas": replicas, "length": int(client.xlen(stream))})
    return rows


def render(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'shard':>5}  {'slot':>5}  {'master':<22} {'entries':>8}  replicas"]
    for row in rows:
        slot = "-" if row["slot"] is None else str(row["slot"])
        lines.append(f"{row['shard']:>5}  {slot:>5}  {row['master']:<22} {row['length']:>8}  "
                     f"{', '.join(row['replicas']) or '-'}")
    per_master: dict[str, int] = {}
    for row in rows:
        per_master[row["master"]] = per_master.get(row["master"], 0) + 1
    lines.append(f"{len(rows)} shards on {len(per_master)} master(s): " + ", ".join(
        f"{m} holds {n}" for m, n in sorted(per_master.items())))
    return "\n".join(lines)
