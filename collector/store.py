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
DEBUG_MAX = 1000  # Lua's unpack() takes a few thousand values at most


class Rejection(msgspec.Struct):
    """A rejected event as the dead-letter stream keeps it: reasons, never raw identifiers."""

    index: int
    event_id: str | None
    event_name: str | None
    event_version: int | None
    errors: list[str]
    received: int
    event: dict[str, object] | None = None
    reason: str = "invalid"  # too_large, malformed, unknown_event, invalid, future (metrics label)
    skew: int = 0  # ms the request's clock-skew correction added, so a replay corrects alike
    shard: int | None = None  # the actor's shard, computed from the raw id before it was hashed


class EventStore:
    def __init__(self, redis: aredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.settings = settings
        self.append = redis.register_script(APPEND_LUA)
        self.marker_ttl = settings.late_window_hours * 3600 + settings.future_margin_seconds
        self.debug_size = max(0, min(settings.debug_buffer_size, DEBUG_MAX))
        self.debug_ttl = max(1, settings.debug_buffer_ttl_seconds)

    def _minid(self) -> str:
        days = self.settings.analytics_retention_days
        if days <= 0:
            return "0"
        return str(int(time.time() * 1000) - days * 86_400_000)

    async def write(
        self,
        by_shard: dict[int, list[StoredEvent]],
        rejections: list[Rejection],
        marker_ttl: int | None = None,
    ) -> dict[int, list[int]]:
        """Store events and rejections in one round trip; return per shard the stored flags.

        ``marker_ttl`` (s) overrides how long the idempotency markers last (imports keep theirs
        for the retention period, so re-running an import is answered as duplicates).
        """
        minid = self._minid()
        async with self.redis.pipeline(transaction=False) as pipe:
            order = []
            for shard, events in by_shard.items():
                for start in range(0, len(events), MAX_PER_ENTRY):
                    chunk = events[start : start + MAX_PER_ENTRY]
                    prefix = keyspace.dedup_prefix(shard)
                    keys = [keyspace.stream(shard), keyspace.recent(shard)]
                    keys += [prefix + e.event_id for e in chunk]
                    args = [marker_ttl or self.marker_ttl, minid, self.debug_size, self.debug_ttl]
                    args += [STORED_ENCODER.encode(e) for e in chunk]
                    await self.append(keys=keys, args=args, client=pipe)
                    order.append(shard)
            for rej in rejections:
                pipe.xadd(
                    keyspace.DEAD_LETTER,
                    {"r": msgspec.json.encode(rej)},
                    maxlen=self.settings.deadletter_maxlen,
                    approximate=True,
                )
            results = await pipe.execute()
        flags: dict[int, list[int]] = {}
        for shard, result in zip(order, results):
            flags.setdefault(shard, []).extend(int(f) for f in result)
        return flags
