"""Periodic upkeep any worker may do: trim streams to the retention window, prune dead consumers.

Both are idempotent, so every worker runs them on its own schedule; no coordination is needed.
"""

from __future__ import annotations

import time
from pathlib import Path

import redis

from schemas import keyspace
from schemas.settings import Settings

PRUNE_LUA = Path(__file__).with_name("prune.lua").read_text()


def trim(client: redis.Redis, settings: Settings, now_ms: int | None = None) -> None:
    """XTRIM MINID ~ every per-shard stream, so memory stays bounded even when no event arrives.

    The collector trims the event streams as it appends; the late and dead-letter streams only
    grow here. Entries trimmed while still pending are acknowledged by the worker that meets them.
    """
    days = settings.analytics_retention_days
    if days <= 0:
        return
    now = int(time.time() * 1000) if now_ms is None else now_ms
    minid = now - days * 86_400_000
    pipe = client.pipeline(transaction=False)
    for shard in range(settings.stream_shards):
        for name in (
            keyspace.stream(shard), keyspace.late_stream(shard), keyspace.worker_dead_letter(shard)
        ):
            pipe.xtrim(name, minid=minid, approximate=True)
    pipe.execute()


def prune_consumers(client: redis.Redis, settings: Settings, idle_ms: int | None = None) -> int:
    """Delete consumers with nothing pending that have been silent for ten heartbeat periods.

    Names like host-pid pile up otherwise; the check and the delete are one script per shard.
    """
    if idle_ms is None:
        idle_ms = 10 * max(settings.heartbeat_ttl_seconds * 1000, settings.claim_idle_ms)
    script = client.register_script(PRUNE_LUA)
    deleted = 0
    for shard in range(settings.stream_shards):
        try:
            deleted += int(script(keys=[keyspace.stream(shard)], args=[settings.consumer_group, idle_ms]))
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc) and "no such key" not in str(exc).lower():
                raise
    return deleted
