"""Admins change the KPI API's settings at run time; every process follows; bad changes get a 400."""

from __future__ import annotations

import random
import time

import redis
from starlette.testclient import TestClient

from kpi_api.app import create_app
from kpi_api.overrides import REFRESH_S
from schemas import keyspace
from schemas.settings import Settings
from scripts.simulate import generate
from tests.kpi_helpers import HOUR, Clock, auth, day, load, ms

ROUTE = "/internal/analytics/settings"


def test_admin_changes_the_k_threshold_and_a_second_process_follows(
    settings: Settings, redis_url: str, r: redis.Redis, rng: random.Random
) -> None:
    now = int(time.time() * 1000)
    events = generate(villages=3, sessions=20, start_ms=now - 20 * HOUR, end_ms=now - 10 * HOUR,
                      seed=rng.randrange(1 << 30))
    load(settings, redis_url, events)
    days = sorted({day(ms(e["ts_utc"])) for e in events})
    breakdown = f"/internal/analytics/kpis/events?start={days[0]}&end={days[-1]}&group_by=event_name"
    clock_a, clock_b = Clock(), Clock()

    def suppressed(client: TestClient) -> set[bool]:
        """Per cell whether it is suppressed: {True} all are, {False} none is."""
        rows = client.get(breakdown, headers=auth()).json()
        assert rows, "the breakdown has rows"
        return {row["value"] is None for row in rows}

    with TestClient(create_app(settings, clock_a)) as a, TestClient(create_app(settings, clock_b)) as b:
        # three villages, k = 5: every cell could single one out
        assert suppressed(a) == suppressed(b) == {True}
        listed = a.get(ROUTE, headers=auth()).json()
        assert listed["kpi_min_group_size"] == {"value": 5, "default": 5, "min": 1, "max": 1000,
                                                "adjusted": False}

        resp = a.patch(ROUTE, json={"kpi_min_group_size": 1}, headers=auth("admin"))
        assert resp.status_code == 200, resp.text
        assert resp.json()["kpi_min_group_size"]["value"] == 1  # no cell suppressed, even of one village
        # this process answers with the new rule at once, not from its cache
        shown = a.get(breakdown, headers=auth()).json()
        assert shown and all(row["value"] is not None for row in shown)
        want = {(day(ms(e["ts_utc"])), e["event_name"]) for e in events}
        assert {(row["date"], row["event_name"]) for row in shown if row["value"]} == want
        # the other process follows within REFRESH_S
        assert suppressed(b) == {True}
        clock_b.now += REFRESH_S + 0.1
        assert suppressed(b) == {False}

        # null restores the environment's value
        resp = a.patch(ROUTE, json={"kpi_min_group_size": None}, headers=auth("admin"))
        assert resp.json()["kpi_min_group_size"] == {"value": 5, "default": 5, "min": 1, "max": 1000,
                                                     "adjusted": False}
        assert suppressed(a) == {True}


def test_settings_changes_are_checked_and_admin_only(settings: Settings, r: redis.Redis) -> None:
    with TestClient(create_app(settings)) as c:
        assert c.get(ROUTE).status_code == 401
        denied = c.patch(ROUTE, json={"kpi_min_group_size": 10}, headers=auth("staff"))
        assert denied.status_code == 403 and denied.json()["error"] == "forbidden"
        for body, detail in [
            ({"kpi_min_group_size": 0}, "from 1 to 1000"),
            ({"kpi_min_group_size": "10"}, "integer"),
            ({"kpi_min_group_size": True}, "integer"),
            ({"jwt_secret_key": "x"}, "not adjustable"),
            ({}, "JSON object"),
            ([1], "JSON object"),
        ]:
            resp = c.patch(ROUTE, json=body, headers=auth("admin"))
            assert resp.status_code == 400, (body, resp.text)
            assert detail in resp.json()["detail"], (body, resp.json())
        bad = c.patch(ROUTE, content=b"{", headers={**auth("admin"), "Content-Type": "application/json"})
        assert bad.status_code == 400 and "JSON" in bad.json()["detail"]
        huge = c.patch(ROUTE, content=b" " * 5000, headers=auth("admin"))
        assert huge.status_code == 413
    assert r.hgetall(keyspace.ADJUSTED_SETTINGS) == {}  # nothing half-applied
