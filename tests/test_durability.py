"""ANALYTICS_WAIT_REPLICAS / ANALYTICS_WAIT_AOF: a 2xx only once the append is as durable as asked,
else a 503 that says why (the events then stay stored; a resend is answered as duplicates and
waits again)."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest

from scripts.simulate import generate
from tests import services
from tests.conftest import WRITE_KEY


def _events(n_villages: int = 20) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    return generate(villages=n_villages, sessions=30, start_ms=now - 4 * 3_600_000,
                    end_ms=now - 2 * 3_600_000, seed=7)


def _post(url: str, events: list[dict[str, Any]]) -> httpx.Response:
    body = {"sent_at": datetime.now(timezone.utc).isoformat(), "events": events}
    return httpx.post(url + "/api/analytics/events", json=body, headers={"X-Write-Key": WRITE_KEY},
                      timeout=30)


@pytest.mark.parametrize("redis_url", ["cluster"], indirect=True)
def test_cluster_answers_after_every_written_master_reached_its_replica(
    env: dict[str, str], r: Any
) -> None:
    events = _events()
    col = services.collector({**env, "ANALYTICS_WAIT_REPLICAS": "1", "ANALYTICS_WAIT_AOF": "0"})
    try:
        first = _post(col.url, events)
        assert first.status_code == 202, first.text
        assert first.json()["accepted"] == len(events)
        again = _post(col.url, events)
        assert again.status_code == 202 and again.json()["duplicates"] == len(events)
    finally:
        col.stop()


@pytest.mark.parametrize("setting", ["ANALYTICS_WAIT_REPLICAS", "ANALYTICS_WAIT_AOF"])
def test_single_node_without_replicas_or_aof_says_not_durable(
    env: dict[str, str], r: Any, setting: str
) -> None:
    """The test server has no replica and no AOF: neither can be promised, so no 2xx."""
    events = _events(5)
    col = services.collector({**env, setting: "1", "ANALYTICS_WAIT_TIMEOUT_MS": "100"})
    try:
        resp = _post(col.url, events)
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"] == "not_durable"
        assert resp.headers["retry-after"] == "1"
    finally:
        col.stop()
    # stored on the primary all the same: nothing lost, a resend is answered as duplicates
    col = services.collector(env)
    try:
        again = _post(col.url, events)
        assert again.status_code == 202 and again.json()["duplicates"] == len(events)
    finally:
        col.stop()
