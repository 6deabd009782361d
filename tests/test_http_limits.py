"""The HTTP limits of the running collector and KPI API, tried with raw sockets as an attacker
would: stalled and trickled bodies, stalled and oversized headers, many stalled connections."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import services
from tests.conftest import WRITE_KEY
from tests.test_collector_support import HEADERS, ROUTE, batch, event

LIMITS = {"HTTP_HEADER_TIMEOUT_SECONDS": "2", "HTTP_BODY_TIMEOUT_SECONDS": "2",
          "HTTP_MAX_HEADER_BYTES": "16384", "HTTP_MAX_CONNECTIONS": "10"}
HEAD = (f"POST {ROUTE} HTTP/1.1\r\nHost: x\r\nX-Write-Key: {WRITE_KEY}\r\n"
        "Content-Type: application/json\r\n")


@pytest.fixture
def collector(env: dict[str, str], r) -> Iterator[services.Service]:  # type: ignore[no-untyped-def]
    svc = services.collector({**env, **LIMITS})
    yield svc
    svc.stop()


OPEN: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_sockets() -> Iterator[None]:
    yield
    while OPEN:
        OPEN.pop().close()


def connect(svc: services.Service) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", svc.port or 0), timeout=10)
    OPEN.append(s)
    return s


def answer(s: socket.socket, within: float) -> tuple[int, dict[str, object], float]:
    """Read until the server closes (or half-closes): status, JSON body, seconds it took."""
    started = time.monotonic()
    s.settimeout(within)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body), time.monotonic() - started


def test_a_stalled_body_gets_408_and_is_closed_within_the_limit(collector: services.Service) -> None:
    s = connect(collector)
    s.sendall(HEAD.encode() + b"Content-Length: 1000\r\n\r\n" + b'{"events": [')
    status, body, took = answer(s, within=10)
    assert status == 408 and body["error"] == "request_timeout", body
    assert "HTTP_BODY_TIMEOUT_SECONDS=2" in str(body["detail"])
    assert 1.5 < took < 4.5, took


def test_a_trickled_body_gets_408_too(collector: services.Service) -> None:
    s = connect(collector)
    s.sendall(HEAD.encode() + b"Content-Length: 1000\r\n\r\n")
    started = time.monotonic()
    s.settimeout(0.5)
    data = b""
    try:
        while time.monotonic() - started < 10:  # a byte every half second
            s.send(b" ")
            try:
                data += s.recv(65536)
            except TimeoutError:
                continue
            if data.endswith(b"}"):
                break
    except (BrokenPipeError, ConnectionResetError):
        pass
    assert data.startswith(b"HTTP/1.1 408 "), data[:100]
    assert time.monotonic() - started < 4.5


def test_a_stalled_header_gets_408(collector: services.Service) -> None:
    s = connect(collector)
    s.sendall(HEAD.encode())  # no blank line: the headers never end
    status, body, took = answer(s, within=10)
    assert status == 408 and "HTTP_HEADER_TIMEOUT_SECONDS=2" in str(body["detail"])
    assert took < 4.5


def test_a_1_mb_header_gets_431(collector: services.Service) -> None:
    payload = json.dumps(batch([event(random.Random(1))])).encode()
    s = connect(collector)
    request = (HEAD + f"X-Pad: {'a' * (1 << 20)}\r\nContent-Length: {len(payload)}\r\n\r\n").encode()
    sender = threading.Thread(target=lambda: _send_quietly(s, request + payload))
    sender.start()
    status, body, _ = answer(s, within=10)
    sender.join()
    assert status == 431 and body["error"] == "header_too_large", body
    # a request within the limits is still served
    ok = httpx.post(collector.url + ROUTE, headers={**HEADERS, "X-Pad": "a" * 8000}, content=payload)
    assert ok.status_code == 202


def _send_quietly(s: socket.socket, data: bytes) -> None:
    try:
        s.sendall(data)
    except OSError:
        pass  # the server stopped reading: expected


def test_stalled_connections_are_shed(collector: services.Service) -> None:
    stalled = []
    for _ in range(20):
        s = connect(collector)
        s.sendall(HEAD.encode() + b"Content-Length: 1000\r\n\r\n")
        stalled.append(s)
    time.sleep(0.3)
    # over HTTP_MAX_CONNECTIONS=10: the rest are answered 503 at once
    shed = [answer(s, within=1.0) for s in stalled[10:]]
    assert {status for status, _, _ in shed} == {503}
    assert all(body["error"] == "too_many_connections" for _, body, _ in shed)
    # and the ten that were let in are all closed by the body deadline
    late = [answer(s, within=6.0) for s in stalled[:10]]
    assert {status for status, _, _ in late} == {408}
    ok = httpx.post(collector.url + ROUTE, headers=HEADERS,
                    content=json.dumps(batch([event(random.Random(2))])))
    assert ok.status_code == 202


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_unfinished_16_mib_headers_do_not_grow_memory(collector: services.Service) -> None:
    before = rss_kb(collector.proc.pid)
    chunk = b"a" * (1 << 16)

    def flood() -> None:
        s = connect(collector)
        try:
            s.sendall(HEAD.encode() + b"X-Pad: ")
            for _ in range(256):  # 16 MiB, never finished
                s.sendall(chunk)
        except OSError:
            pass  # refused and closed, as it should be
        finally:
            s.close()

    threads = [threading.Thread(target=flood) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    grown_mb = (rss_kb(collector.proc.pid) - before) / 1024
    assert grown_mb < 20, grown_mb
    assert httpx.get(collector.url + "/healthz").status_code == 200


def test_the_kpi_api_has_the_same_limits(env: dict[str, str], r) -> None:  # type: ignore[no-untyped-def]
    api = services.kpi_api({**env, **LIMITS})
    try:
        s = connect(api)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        status, body, took = answer(s, within=10)
        assert status == 408 and took < 4.5
        s = connect(api)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20000 + b"\r\n\r\n")
        status, body, _ = answer(s, within=10)
        assert status == 431
    finally:
        api.stop()
