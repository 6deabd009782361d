"""A client that goes away in the middle of its body is a normal event for a collector on the
internet: one log line and a metric, no traceback."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx

from tests import services
from tests.conftest import WRITE_KEY
from tests.test_collector_support import ROUTE, metric

CUTS = 5


def cut_off(port: int) -> None:
    """Send a request's headers and part of its body, then close the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(
            f"POST {ROUTE} HTTP/1.1\r\nHost: x\r\nX-Write-Key: {WRITE_KEY}\r\n"
            "Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n".encode()
            + b'{"events": [' + b" " * 2000
        )
        time.sleep(0.2)


def test_a_disconnect_mid_body_is_one_line_and_a_metric(env: dict[str, str], r, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "collector.log"
    with log.open("wb") as out:
        svc = services.collector({**env, "LOG_LEVEL": "INFO"}, stderr=out)
        try:
            for _ in range(CUTS):
                cut_off(svc.port or 0)
            deadline = time.monotonic() + 10
            seen = 0.0
            while time.monotonic() < deadline:
                seen = metric(httpx.get(svc.url + "/metrics").text, "collector_client_disconnects_total")
                if seen >= CUTS:
                    break
                time.sleep(0.1)
            assert seen == CUTS
        finally:
            svc.stop()
    text = log.read_text()
    assert "Traceback" not in text and "ClientDisconnect" not in text, text[-3000:]
    lines = [line for line in text.splitlines() if "disconnected" in line]
    assert len(lines) == CUTS, text[-3000:]
