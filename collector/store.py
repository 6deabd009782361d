"""Writing accepted events (one atomic script per shard) and rejected ones (the dead-letter stream)."""

from __future__ import annotations

import time
from pathlib import Path

import msgspec
import redis.asyncio as aredis

from schemas import keyspace
from schemas.catalog import STORED_ENCODER, StoredEvent
from schemas.settings import Settings

APPEND_LUA = Path(__file__).with_name("append.lua").read_text()
MAX_PER_ENTRY = 65_535  # array16 header in append.lua


class Rejection(msgspec.Struct):
    """A rejected event as the dead-letter stream keeps it: reasons, never raw identifiers."""

    index: int
    event_id: str | None
    event_name: str | None
    event_version: int | None
    errors: list[str]
    received: int
    event: dict[str, object] | None = None


class EventStore:
    def __init__(self, redis: aredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.append = redis.register_script(APPEND_LUA)
        self.marker_ttl = settings.late_window_hours * 3600 + settings.future_margin_seconds

    def _minid(self) -> str:
        days = self.settings.analytics_retention_days
        if days <= 0:
            return "0"
        return str(int(time.time() * 1000) - days * 86_400_000)

    async def write(
        self, by_shard: dict[int, list[StoredEvent]], rejections: list[Rejection]
    ) -> dict[int, list[int]]:
        """Store events and rejections in one round trip; return per shard the stored flags."""
        minid = self._minid()
        async with self.redis.pipeline(transaction=False) as pipe:
            order = []
            for shard, events in by_shard.items():
                for start in range(0, len(events), MAX_PER_ENTRY):
                    chunk = events[start : start + MAX_PER_ENTRY]
                    prefix = keyspace.dedup_prefix(shard)
                    keys = [keyspace.stream(shard)] + [prefix + e.event_id for e in chunk]
                    args = [self.marker_ttl, minid] + [STORED_ENCODER.encode(e) for e in chunk]
                    await self.append(keys=keys, args=args, client=pipe)
                    order.append(shard)
            for rej in rejections:
                pipe.xadd(
                    keyspace.DEAD_LETTER,
                    {"r": msgspec.json.encode(rej)},
                    maxlen=100_000,
                    approximate=True,
                )
            results = await pipe.execute()
        flags: dict[int, list[int]] = {}
        for shard, result in zip(order, results):
            flags.setdefault(shard, []).extend(int(f) for f in result)
        return flags
