"""Odd parameter combinations against every KPI route under every profile (hypothesis): never a
5xx, and every 4xx names its reason. In-process (TestClient) against the real Redis server, with a
little data of the last days so the reads have something to merge."""

from __future__ import annotations

import os
import random
import time
from datetime import datetime, timedelta, timezone

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, given, seed, settings as hsettings
from starlette.testclient import TestClient

from kpi_api import kpis
from kpi_api.app import create_app
from schemas.settings import Settings
from schemas import profiles
from scripts.seed_traffic import profile_events
from tests.kpi_helpers import HOUR, auth
from tests.test_profiles import send_and_apply

PROFILES = ("seed000", "seed001", "seed002", "seed003", "seed004")
TODAY = datetime.now(timezone.utc).date()


def _dates() -> list[str]:
    near = [(TODAY + timedelta(days=d)).isoformat() for d in (-400, -92, -40, -8, -2, -1, 0, 1, 30)]
    return near + ["0001-01-01", "9999-12-31", "2025-02-30", "2025-1-1", "", "today", "2025-01-01T00",
                   "+2025-01-01", "２０２５-01-01"]


ODD = ["", "0", "-1", "1", "7", "30", "31", "1000", "1001", "1000000", "1000001", "99999999999999999999",
       "1.5", "1e3", " 1", "x", "\u0000", "💥", "true", "null"]


def _values(name: str, known: list[str], dims: list[str], events: list[str]) -> st.SearchStrategy[str]:
    if name in ("start", "end"):
        return st.sampled_from(_dates())
    if name == "granularity":
        return st.sampled_from(["day", "hour", "week", "DAY", ""] + ODD[:3])
    if name == "group_by":
        return st.sampled_from(dims + ["platform", "app_version", "event_name", "user_id", "", "x"])
    if name == "metric":
        return st.sampled_from(["avg", "p50", "p95", "p99", "", "AVG"] + known)
    if name == "event_name":
        return st.sampled_from(events + ["", "x", "village_active\u0000"])
    if name == "all_time":
        return st.sampled_from(["0", "1", "true", "false", "yes", ""])
    return st.sampled_from(ODD)


PARAMS = ["start", "end", "granularity", "group_by", "limit", "offset", "metric", "event_name", "after",
          "all_time"]


@pytest.mark.parametrize("profile", PROFILES)
def test_odd_kpi_requests_never_get_a_5xx(env, r, profile):
    s = Settings.from_env({**env, "ANALYTICS_PROFILE": profile, "KPI_RATE_LIMIT_PER_MINUTE": "0"})
    run_seed = int(os.environ.get("TEST_SEED", random.randrange(1 << 30)))
    print(f"seed for test_odd_kpi_requests_never_get_a_5xx[{profile}]: TEST_SEED={run_seed}")
    now = int(time.time() * 1000)
    send_and_apply(r, s, profile_events(profiles.load(profile), actors=12, count=300,
                                        start_ms=now - 50 * HOUR, end_ms=now - HOUR, seed=run_seed), "fuzz")
    known = kpis.registry(profile)
    names = sorted(known)
    dims = sorted({d for k in known.values() for d in k.dimensions})
    events = list(profiles.event_names(profile))
    paths = [f"/internal/analytics/kpis/{n}{tail}" for n in names + ["nope", "%00"]
             for tail in ("", "/summary", "/heatmap", "/top")]
    paths += ["/internal/analytics/kpis.csv", "/api/analytics/metrics", "/api/analytics/reports/dau",
              "/api/admin/analytics/daily-summary/", "/api/admin/analytics/active-users/",
              "/api/admin/analytics/top-services/"]
    seen: dict[int, int] = {}
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        h = auth("admin")

        @seed(run_seed)
        @hsettings(max_examples=400, deadline=None, database=None,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
        @given(path=st.sampled_from(paths), data=st.data())
        def one(path, data):
            chosen = data.draw(st.lists(st.sampled_from(PARAMS), max_size=6, unique=True))
            q = {"start": (TODAY - timedelta(days=3)).isoformat(), "end": TODAY.isoformat()}
            if path.endswith("/top-services/"):
                q = {"date_from": q["start"], "date_to": q["end"]}
            for p in chosen:
                q[p] = data.draw(_values(p, names, dims, events))
            if data.draw(st.booleans()):
                q.pop(data.draw(st.sampled_from(sorted(q))), None)
            resp = c.get(path, params=q, headers=h)
            seen[resp.status_code] = seen.get(resp.status_code, 0) + 1
            assert resp.status_code < 500, (path, q, resp.status_code, resp.text[:500])
            if 400 <= resp.status_code < 500:
                body = resp.json()
                assert body.get("detail") or body.get("error"), (path, q, body)

        one()
    print("statuses seen:", dict(sorted(seen.items())))
    assert seen.get(200, 0) > 20 and seen.get(400, 0) > 20


@pytest.mark.parametrize("path,start,end", [
    ("command-executions/summary", "0001-01-01", "0001-01-01"),  # the previous period before year 1
    ("weekly-active-villages", "0001-01-01", "0001-01-03"),  # its window reaches before year 1
    ("total-villages", "0001-01-01", "0001-01-01"),  # the day before the range
    ("village-retention", "9999-12-30", "9999-12-31"),  # D+N after year 9999
    ("daily-active-villages", "1969-12-31", "1970-01-01"),
])
def test_dates_the_calendar_cannot_reach_get_a_400(env, r, path, start, end):
    s = Settings.from_env({**env, "ANALYTICS_PROFILE": "seed003"})
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        resp = c.get(f"/internal/analytics/kpis/{path}", params={"start": start, "end": end}, headers=auth())
        assert resp.status_code == 400, resp.text
        assert "1970-01-01..9998-12-31" in resp.json()["detail"]
        ok = c.get(f"/internal/analytics/kpis/{path}", params={"start": "1970-01-01", "end": "1970-01-02"},
                   headers=auth())
        assert ok.status_code == 200, ok.text


def test_event_name_with_a_breakdown_the_counters_do_not_keep_per_event_gets_a_400(env, r):
    """A count's own dimensions (platform, ...) are kept over every event: filtering them by an
    event name cannot be answered, and was answered unfiltered."""
    s = Settings.from_env({**env, "ANALYTICS_PROFILE": "seed000"})
    span = {"start": TODAY.isoformat(), "end": TODAY.isoformat()}
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        resp = c.get("/internal/analytics/kpis/events", headers=auth(),
                     params={**span, "group_by": "platform", "event_name": "search_performed"})
        assert resp.status_code == 400 and "event_name" in resp.json()["detail"], resp.text
        for extra in ({"group_by": "platform"}, {"group_by": "event_name", "event_name": "search_performed"},
                      {"event_name": "search_performed"}):
            ok = c.get("/internal/analytics/kpis/events", headers=auth(), params={**span, **extra})
            assert ok.status_code == 200, (extra, ok.text)
