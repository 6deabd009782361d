"""Request rate limits per write key (or token subject) and per client IP, shared through Redis.

A fixed one-minute window per subject: one INCR (and EXPIRE) per subject, all in one round trip, so
several collector processes count together: one small script on a single node (a pipeline of four
commands cost redis-py ~1.7x the client CPU of one script call), a pipeline on a cluster (the
subjects' keys live in different slots). Subjects are keyed hashes (see ``Pseudonymizer.subject``):
no write key or IP address becomes part of a Redis key.
"""

from __future__ import annotations

import redis.asyncio as aredis
from redis.exceptions import NoScriptError

from collector.privacy import Pseudonymizer
from infra.connection import is_cluster
from infra.pipelined import Pipelined
from schemas import keyspace
from schemas.settings import Settings

WINDOW_TTL_S = 120
COUNT_LUA = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('INCR', key)
  redis.call('EXPIRE', key, ARGV[1])
end
return out
"""


class RateLimiter:
    def __init__(self, redis: aredis.Redis, settings: Settings, pseudo: Pseudonymizer,
                 link: Pipelined | None = None) -> None:
        self.redis = redis
        self.link = link  # the process's pipelined connection (single node), else redis-py's
        self.limit = settings.rate_limit_per_minute
        self.pseudo = pseudo
        self.cluster = is_cluster(redis)
        self.count = redis.register_script(COUNT_LUA)

    async def over(self, subjects: list[tuple[str, str]], now_ms: int) -> int | None:
        """Count one request for each (kind, raw subject); the Retry-After seconds if any is over."""
        if self.limit <= 0 or not subjects:
            return None
        minute, into = divmod(now_ms // 1000, 60)
        keys = [keyspace.rate_limit(await self.pseudo.subject(kind, raw, now_ms), minute)
                for kind, raw in subjects]
        if self.cluster:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.incr(key)
                    pipe.expire(key, WINDOW_TTL_S)
                counts = (await pipe.execute())[::2]
        else:
            counts = await self._counted(keys)
        if any(int(count) > self.limit for count in counts):
            return max(1, 60 - into)
        return None

    async def _counted(self, keys: list[str]) -> list[int]:
        """The count script, EVALSHA straight away; a server without it (restarted) gets it
        loaded once, on the pipelined connection that just answered when there is one (not an
        idle pooled one that may still be the old server's)."""
        if self.link is None:
            try:
                return await self.redis.evalsha(self.count.sha, len(keys), *keys, WINDOW_TTL_S)
            except NoScriptError:
                return await self.count(keys=keys, args=[WINDOW_TTL_S])
        args = ("EVALSHA", self.count.sha, len(keys), *keys, WINDOW_TTL_S)
        try:
            return await self.link.call(*args)
        except NoScriptError:
            await self.link.call("SCRIPT", "LOAD", COUNT_LUA)
            return await self.link.call(*args)
