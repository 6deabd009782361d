"""Every error of both running services is ``{"error", "detail"}``: unknown routes (404), wrong
methods (405), and a garbage bearer token's 401, which names no decoder internals."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests import services
from tests.test_collector_support import ROUTE

GARBAGE = ["t7e3.t7e3.t7e3", "abc.def.ghi", "not-a-jwt"]


@pytest.fixture
def both(env: dict[str, str], r) -> Iterator[dict[str, services.Service]]:  # type: ignore[no-untyped-def]
    collector = services.collector(env)
    try:
        api = services.kpi_api(env)
    except BaseException:
        collector.stop()
        raise
    yield {"collector": collector, "kpi_api": api}
    api.stop()
    collector.stop()


CASES = {
    "collector": [("GET", "/no/such/route", 404), ("GET", ROUTE, 405), ("DELETE", "/healthz", 405)],
    "kpi_api": [("GET", "/no/such/route", 404), ("POST", "/internal/analytics/kpis", 405),
                ("DELETE", "/internal/analytics/settings", 405)],
}


def test_404_and_405_are_json_on_both_services(both: dict[str, services.Service]) -> None:
    for name, svc in both.items():
        with httpx.Client(base_url=svc.url, timeout=10) as c:
            for method, path, status in CASES[name]:
                resp = c.request(method, path)
                assert resp.status_code == status, (name, method, path, resp.text)
                assert resp.headers["content-type"].startswith("application/json"), (name, path)
                body = resp.json()
                assert set(body) == {"error", "detail"} and body["detail"], (name, path, body)
                if status == 405:
                    assert resp.headers["allow"], (name, path)


def test_a_garbage_bearer_token_is_an_invalid_token(both: dict[str, services.Service]) -> None:
    targets = [(both["kpi_api"], "GET", "/internal/analytics/kpis"),
               (both["collector"], "POST", ROUTE)]
    for svc, method, path in targets:
        with httpx.Client(base_url=svc.url, timeout=10) as c:
            for token in GARBAGE:
                resp = c.request(method, path, headers={"Authorization": f"Bearer {token}",
                                                        "Content-Type": "application/json"},
                                 content=b'{"events": []}')
                assert resp.status_code == 401, (path, token, resp.text)
                body = resp.json()
                assert set(body) == {"error", "detail"}
                assert body["detail"] == "invalid token", (path, token, body)
