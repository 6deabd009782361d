"""One connection to a single Redis node that pipelines the commands of concurrent requests.

The collector's hot path (the rate-limit count and the store's append scripts) sends two round
trips per request; through redis-py's asyncio client each costs ~100 us of Python (a pooled
connection taken and given back, a timeout task, per-command parsing and callbacks), through
this ~25 us (issue 16). Redis answers a connection's commands in the order they came, so one
connection serves every request of the process: a call writes its commands at once (packed by
hiredis) and waits for a future that ``data_received`` resolves with the replies in order.

Replies are the server's own, as hiredis parses them (bytes, ints, lists: what redis-py gives
for EVALSHA, but none of its per-command conversions, so SET answers b"OK", not True); an error
reply becomes the exception redis-py would raise for it (``NoScriptError``, ``ResponseError``
...), returned in place of that command's reply and raised by ``call``.
A lost connection fails every command in flight with ``redis.ConnectionError`` (the callers'
503); a reply slower than ``timeout_s`` closes the connection the same way (``TimeoutError``),
since later replies could no longer be matched. The next call connects again.

Only for a plain TCP or unix-socket single node (``for_client``): a cluster, TLS or a pool
with options this does not mirror keeps redis-py's client.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any

import hiredis
import redis
import redis.asyncio as aredis
from redis._parsers.base import BaseParser

DEFAULT_TIMEOUT_S = 10.0


def _error(reply: hiredis.ReplyError) -> redis.RedisError:
    return BaseParser.parse_error(str(reply))


class _Protocol(asyncio.Protocol):
    def __init__(self, link: Pipelined) -> None:
        self.link = link
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        # (future, replies so far, replies expected, sent at) per call in flight on this
        # connection, in order: a connection's own, so losing it fails only its own calls
        self.waiting: collections.deque[tuple[asyncio.Future[list[Any]], list[Any], int, float]] = (
            collections.deque()
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        reader = self.reader
        reader.feed(data)
        waiting = self.waiting
        while waiting:
            reply = reader.gets()
            if reply is False:
                return
            future, replies, count, _ = waiting[0]
            replies.append(_error(reply) if isinstance(reply, hiredis.ReplyError) else reply)
            if len(replies) == count:
                waiting.popleft()
                if not future.done():
                    future.set_result(replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True  # before the link is told: a connect still under way must not keep it
        self.link._lost(self, exc)


class Pipelined:
    """Commands of many callers on one connection, replies matched in order (see the module)."""

    def __init__(self, host: str | None = None, port: int = 6379, path: str | None = None,
                 db: int = 0, username: str | None = None, password: str | None = None,
                 timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.host, self.port, self.path, self.db = host, port, path, db
        self.username, self.password = username, password
        self.timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._attempt: asyncio.Future[_Protocol] | None = None  # the connect under way
        self._watchdog: asyncio.TimerHandle | None = None
        self._closed = False

    @classmethod
    def for_client(cls, client: Any) -> Pipelined | None:
        """A pipelined connection to the node of a plain single-node client, or None."""
        if not isinstance(client, aredis.Redis):
            return None
        pool = client.connection_pool
        kwargs = pool.connection_kwargs
        if not issubclass(pool.connection_class, (aredis.Connection, aredis.UnixDomainSocketConnection)):
            return None
        if issubclass(pool.connection_class, aredis.SSLConnection) or kwargs.get("decode_responses"):
            return None
        if kwargs.get("credential_provider") or str(kwargs.get("protocol") or 2) != "2":
            return None
        unix = issubclass(pool.connection_class, aredis.UnixDomainSocketConnection)
        timeout = kwargs.get("socket_timeout") or DEFAULT_TIMEOUT_S
        return cls(
            host=None if unix else kwargs.get("host", "localhost"), port=int(kwargs.get("port", 6379)),
            path=kwargs.get("path") if unix else None, db=int(kwargs.get("db") or 0),
            username=kwargs.get("username"), password=kwargs.get("password"), timeout_s=float(timeout),
        )

    async def call(self, *args: Any) -> Any:
        """One command's reply; an error reply is raised."""
        reply = (await self.call_many([args]))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def call_many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """Every command's reply, in order; an error reply is returned as its exception."""
        if not commands:
            return []
        protocol = self._protocol if self._protocol is not None else await self._connect()
        return await self._send(protocol, commands)

    def _send(self, protocol: _Protocol, commands: list[tuple[Any, ...]]) -> asyncio.Future[list[Any]]:
        transport = protocol.transport
        if transport is None or transport.is_closing():
            raise redis.ConnectionError("connection to the store is closing")
        pack = hiredis.pack_command
        data = b"".join([pack(c) for c in commands]) if len(commands) > 1 else pack(commands[0])
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        protocol.waiting.append((future, [], len(commands), time.monotonic()))
        transport.write(data)
        if self._watchdog is None:
            self._arm()
        return future

    async def _connect(self) -> _Protocol:
        """The connection being made, one attempt for every caller that needs it: a failed
        attempt fails them all at once (one after another, the k-th waited k timeouts); a
        cancelled caller leaves the attempt to the others (it closes what it opened if unused)."""
        if self._closed:
            raise redis.ConnectionError("the pipelined connection is closed")
        attempt = self._attempt
        if attempt is None:
            attempt = self._attempt = asyncio.ensure_future(self._open())
            attempt.add_done_callback(self._attempted)
        return await asyncio.shield(attempt)

    def _attempted(self, attempt: asyncio.Future[_Protocol]) -> None:
        if self._attempt is attempt:
            self._attempt = None
        if not attempt.cancelled():
            attempt.exception()  # retrieved, even when every caller has gone

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            if self.path is not None:
                connect = loop.create_unix_connection(lambda: _Protocol(self), self.path)
            else:
                connect = loop.create_connection(lambda: _Protocol(self), self.host, self.port)
            transport, protocol = await asyncio.wait_for(connect, self.timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            raise redis.ConnectionError(f"cannot connect to the store: {exc}") from exc
        setup: list[tuple[Any, ...]] = []
        if self.password is not None:
            setup.append(("AUTH", self.username, self.password) if self.username else ("AUTH", self.password))
        if self.db:
            setup.append(("SELECT", self.db))
        try:
            if setup:  # not under the watchdog (it watches the connection in use): timed here
                try:
                    replies = await asyncio.wait_for(self._send(protocol, setup), self.timeout_s)
                except asyncio.TimeoutError as exc:
                    raise redis.TimeoutError(
                        f"no reply from the store within {self.timeout_s} s") from exc
                failed = next((r for r in replies if isinstance(r, Exception)), None)
                if failed is not None:
                    raise failed
            # closed by the other side before this resumed (its connection_lost already ran,
            # so nothing would ever unset it): never the connection in use
            if protocol.lost or transport.is_closing():
                raise redis.ConnectionError("connection to the store lost: closed while connecting")
            if self._closed:
                raise redis.ConnectionError("the pipelined connection is closed")
        except BaseException:  # an error reply, a timeout, a loss, a cancelled caller
            transport.abort()
            raise
        self._protocol = protocol
        return protocol

    def _arm(self) -> None:
        self._watchdog = asyncio.get_running_loop().call_later(self.timeout_s / 4, self._check)

    def _check(self) -> None:
        """Close a connection whose oldest reply is overdue (its successors could not be matched)."""
        self._watchdog = None
        protocol = self._protocol
        if protocol is None or not protocol.waiting:
            return
        if time.monotonic() - protocol.waiting[0][3] > self.timeout_s:
            self._protocol = None
            _fail(protocol, redis.TimeoutError(f"no reply from the store within {self.timeout_s} s"))
            if protocol.transport is not None:
                protocol.transport.abort()
            return
        self._arm()

    def _lost(self, protocol: _Protocol, exc: Exception | None) -> None:
        if self._protocol is protocol:
            self._protocol = None
        _fail(protocol, redis.ConnectionError(f"connection to the store lost: {exc or 'closed'}"))

    async def aclose(self) -> None:
        self._closed = True
        if self._attempt is not None:
            self._attempt.cancel()  # closes what it opened
        protocol, self._protocol = self._protocol, None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if protocol is not None:
            _fail(protocol, redis.ConnectionError("the pipelined connection is closed"))
            if protocol.transport is not None:
                protocol.transport.close()
                await asyncio.sleep(0)  # let the transport finish closing


def _fail(protocol: _Protocol, error: redis.RedisError) -> None:
    """Fail every call in flight on this connection (their replies can no longer be matched)."""
    while protocol.waiting:
        future = protocol.waiting.popleft()[0]
        if not future.done():
            future.set_exception(error)
