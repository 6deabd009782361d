"""Request rate limits per write key (or token subject) and per client IP, shared through Redis.

A fixed one-minute window per subject: one INCR per subject, both in one pipelined round trip, so
several collector processes count together. Subjects are keyed hashes (see ``Pseudonymizer.subject``):
no write key or IP address becomes part of a Redis key.
"""

from __future__ import annotations

import redis.asyncio as aredis

from collector.privacy import Pseudonymizer
from schemas import keyspace
from schemas.settings import Settings


class RateLimiter:
    def __init__(self, redis: aredis.Redis, settings: Settings, pseudo: Pseudonymizer) -> None:
        self.redis = redis
        self.limit = settings.rate_limit_per_minute
        self.pseudo = pseudo

    async def over(self, subjects: list[tuple[str, str]], now_ms: int) -> int | None:
        """Count one request for each (kind, raw subject); the Retry-After seconds if any is over."""
        if self.limit <= 0 or not subjects:
            return None
        minute, into = divmod(now_ms // 1000, 60)
        async with self.redis.pipeline(transaction=False) as pipe:
            for kind, raw in subjects:
                key = keyspace.rate_limit(await self.pseudo.subject(kind, raw, now_ms), minute)
                pipe.incr(key)
                pipe.expire(key, 120)
            results = await pipe.execute()
        if any(int(count) > self.limit for count in results[::2]):
            return max(1, 60 - into)
        return None
