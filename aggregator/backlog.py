"""How far behind the workers are, per shard: undelivered lag, pending entries, oldest pending idle."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from schemas import keyspace
from schemas.settings import Settings


@dataclass(frozen=True)
class ShardBacklog:
    lag: int  # entries not yet delivered to any consumer
    pending: int  # delivered, not yet acknowledged
    oldest_idle_ms: int  # since the oldest pending entry was last delivered (0 if none)


def shard_backlog(client: redis.Redis, settings: Settings, shard: int) -> ShardBacklog:
    """A stream whose group does not exist yet counts all its entries as lag."""
    name = keyspace.stream(shard)
    try:
        groups = client.xinfo_groups(name)
    except redis.ResponseError:  # no such stream: nothing was ever written
        return ShardBacklog(0, 0, 0)
    group = next((g for g in groups if _text(g["name"]) == settings.consumer_group), None)
    if group is None:
        return ShardBacklog(int(client.xlen(name)), 0, 0)
    lag = group.get("lag")
    if lag is None:
        # the server cannot tell after some deletions: count what follows the last delivered id
        lag = len(client.xrange(name, min="(" + _text(group["last-delivered-id"]), count=100_000))
    pending = int(group["pending"])
    oldest = 0
    if pending:
        first = client.xpending_range(name, settings.consumer_group, min="-", max="+", count=1)
        oldest = int(first[0]["time_since_delivered"]) if first else 0
    return ShardBacklog(int(lag), pending, oldest)


def pending_total(client: redis.Redis, settings: Settings) -> int:
    """Entries not yet applied across all shards: undelivered lag plus pending."""
    total = 0
    for shard in range(settings.stream_shards):
        b = shard_backlog(client, settings, shard)
        total += b.lag + b.pending
    return total


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
