"""Backpressure: refuse new events (503) while the workers are too far behind or Redis is full.

Each process probes Redis at most once per ``BACKPRESSURE_CHECK_MS`` (one pipelined round trip
for ``XINFO GROUPS`` of every shard, one ``INFO memory`` of every primary: on a cluster the
fullest master decides) and answers from the cached verdict between probes, so the hot path
pays nothing per request.
"""

from __future__ import annotations

import asyncio
import time

import redis
import redis.asyncio as aredis

from schemas import keyspace
from infra.connection import ainfo_primaries
from schemas.settings import Settings

RETRY_AFTER_S = 5  # long enough for workers to drain a few batches, short for an SDK's backoff


class Backpressure:
    def __init__(self, redis_client: aredis.Redis, settings: Settings) -> None:
        self.redis = redis_client
        self.settings = settings
        self.interval = settings.backpressure_check_ms / 1000
        self.checked_at = float("-inf")
        self.verdict: str | None = None
        self.lock = asyncio.Lock()

    async def reason(self) -> str | None:
        """Why new events should be refused now, or None."""
        if time.monotonic() - self.checked_at < self.interval:
            return self.verdict
        async with self.lock:  # one probe in flight per process, however many requests wait
            if time.monotonic() - self.checked_at >= self.interval:
                self.verdict = await self._probe()
                self.checked_at = time.monotonic()
        return self.verdict

    async def _probe(self) -> str | None:
        s = self.settings
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for shard in range(s.stream_shards):
                    pipe.xinfo_groups(keyspace.stream(shard))
                    pipe.xlen(keyspace.stream(shard))
                results = await pipe.execute(raise_on_error=False)
            memories = await ainfo_primaries(self.redis, "memory")
        except (redis.RedisError, OSError, redis.exceptions.RedisClusterException):
            return None  # the store write will fail and answer 503 on its own
        lag = 0
        for groups, length in zip(results[::2], results[1::2]):
            if isinstance(groups, Exception) or isinstance(length, Exception):
                continue  # no stream yet
            group = next((g for g in groups if _name(g) == s.consumer_group), None)
            if group is None:  # no worker has ever read this shard: all of it is undelivered
                lag += int(length)
            elif group.get("lag") is not None:
                lag += int(group["lag"])
        if lag > s.backpressure_max_lag:
            return f"{lag} stream entries wait for the workers (bound {s.backpressure_max_lag})"
        for memory in memories:
            if not isinstance(memory, dict):
                continue
            used = int(memory.get("used_memory", 0))
            if 0 < s.backpressure_max_memory_bytes < used:
                return f"Redis uses {used} bytes (bound {s.backpressure_max_memory_bytes})"
            maxmemory = int(memory.get("maxmemory", 0))
            if maxmemory and used * 100 > maxmemory * s.backpressure_memory_percent:
                return f"Redis uses over {s.backpressure_memory_percent}% of maxmemory"
        return None


def _name(group: dict[str, object]) -> str:
    name = group.get("name", b"")
    return name.decode() if isinstance(name, bytes) else str(name)
