"""The KPI API against ground truth: every KPI route, breakdowns, summaries, heatmap and CSV,
validation errors, roles, the k threshold, the two cache lifetimes and per-token rate limits."""

from __future__ import annotations

import csv
import io
import random
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from kpi_api.app import create_app
from kpi_api.auth import token_digest
from infra import tokens
from schemas.settings import Settings
from schemas.sketch import exact_quantile
from scripts.simulate import event, generate
from tests.conftest import BACKENDS, JWT_SECRET
from tests.kpi_helpers import HOUR, Clock, auth, close, day, load, truth

KPIS = "/internal/analytics/kpis"

# the KPI routes on a single node and on a 3-master cluster
pytestmark = pytest.mark.parametrize("redis_url", BACKENDS, indirect=True)


@pytest.fixture
def loaded(settings: Settings, redis_url: str, rng: random.Random) -> Any:
    now = int(time.time() * 1000)
    events = generate(villages=120, sessions=500, start_ms=now - 40 * HOUR, end_ms=now - 5 * HOUR,
                      seed=rng.randrange(1 << 30))
    load(settings, redis_url, events)
    return truth(events)


def test_kpi_routes_match_ground_truth(settings: Settings, loaded: Any) -> None:
    t = loaded
    days = sorted(t.villages)
    start, end = days[0], days[-1]
    all_days = [(date.fromisoformat(start) + timedelta(days=i)).isoformat()
                for i in range((date.fromisoformat(end) - date.fromisoformat(start)).days + 1)]
    rng_q = f"start={start}&end={end}"
    with TestClient(create_app(settings)) as c:
        h = auth()
        dav = c.get(f"{KPIS}/daily-active-villages?{rng_q}", headers=h).json()
        assert [row["date"] for row in dav] == all_days
        for row in dav:  # an HLL of ~100 ids may put two in one register: 2 % (2.5 standard errors)
            assert close(row["value"], len(t.villages[row["date"]]), rel=0.02), (row, len(t.villages[row["date"]]))
        for path, name in (("dialogue-opens", "dialogue_open"), ("command-executions", "command_executed")):
            rows = c.get(f"{KPIS}/{path}?{rng_q}", headers=h).json()
            assert rows == [{"date": d, "value": t.counts[d][name]} for d in all_days]
            hourly = c.get(f"{KPIS}/{path}?{rng_q}&granularity=hour", headers=h).json()
            assert len(hourly) == 24 * len(all_days)
            for row in hourly:
                assert row["value"] == t.hourly[(row["date"], row["hour"])][name], row
        for metric, q in (("avg", None), ("p50", 0.5), ("p95", 0.95)):
            rows = c.get(f"{KPIS}/session-duration?{rng_q}&metric={metric}", headers=h).json()
            for row in rows:
                ds = t.durations[row["date"]]
                if not ds:
                    assert row["value"] == 0
                    continue
                want = sum(ds) / len(ds) if q is None else exact_quantile(ds, q)
                assert close(row["value"], want / 1000, rel=0.011, abs_=0.002), (metric, row, want)

        # every event name per day, all events per day, and a top-1 breakdown
        by_type = c.get(f"{KPIS}/events-by-type?{rng_q}", headers=h).json()
        names = sorted({n for d in all_days for n in t.counts[d]})
        assert by_type == [{"date": d, "event_name": n, "value": t.counts[d][n]} for d in all_days for n in names]
        total = c.get(f"{KPIS}/events?{rng_q}", headers=h).json()
        assert total == [{"date": d, "value": sum(t.counts[d].values())} for d in all_days]
        grand = Counter[str]()
        for d in all_days:
            grand.update(t.counts[d])
        top = c.get(f"{KPIS}/events?{rng_q}&group_by=event_name&limit=1", headers=h).json()
        assert {row["event_name"] for row in top} == {max(grand, key=lambda n: (grand[n], n))}
        only = c.get(f"{KPIS}/events?{rng_q}&event_name=dialogue_open&granularity=hour", headers=h).json()
        assert sum(row["value"] for row in only) == grand["dialogue_open"]

        # rolling uniques: all the data is within the week, so WAU/MAU of the last day = all villages
        everyone = set().union(*t.villages.values())
        for kpi in ("weekly-active-villages", "monthly-active-villages"):
            rows = c.get(f"{KPIS}/{kpi}?{rng_q}", headers=h).json()
            assert close(rows[-1]["value"], len(everyone))
            first = set().union(*(t.villages[d] for d in all_days[:1]))
            assert close(rows[0]["value"], len(first))

        # summaries: distinct villages over the range (not the sum of days), sums, previous week
        s = c.get(f"{KPIS}/daily-active-villages/summary?{rng_q}", headers=h).json()
        assert close(s["total"], len(everyone)) and s["previous"]["total"] == 0
        assert "distinct" in s["total_means"] and s["delta"] == s["total"] and s["delta_pct"] is None
        s = c.get(f"{KPIS}/command-executions/summary?{rng_q}", headers=h).json()
        assert s["total"] == grand["command_executed"]
        prev_end = date.fromisoformat(end) - timedelta(days=7)
        assert s["previous"]["end"] == prev_end.isoformat()
        s = c.get(f"{KPIS}/session-duration/summary?{rng_q}&metric=avg", headers=h).json()
        every = [x for d in all_days for x in t.durations[d]]
        assert close(s["total"], sum(every) / len(every) / 1000, rel=0.011, abs_=0.002)
        # shifting the range a week later makes the loaded week the previous period
        later = f"start={date.fromisoformat(start) + timedelta(days=7)}&end={date.fromisoformat(end) + timedelta(days=7)}"
        s = c.get(f"{KPIS}/dialogue-opens/summary?{later}", headers=h).json()
        assert s["total"] == 0 and s["previous"]["total"] == grand["dialogue_open"]
        assert s["delta"] == -grand["dialogue_open"] and s["delta_pct"] == -100.0

        # heatmap: weekday x hour from the hourly counters
        hm = c.get(f"{KPIS}/events/heatmap?{rng_q}", headers=h).json()
        want = Counter[tuple[int, int]]()
        for ev in t.events:
            ts = datetime.fromisoformat(ev["ts_utc"].replace("Z", "+00:00"))
            want[(ts.weekday(), ts.hour)] += 1
        assert len(hm["cells"]) == 168
        for cell in hm["cells"]:
            assert cell["value"] == want[(cell["weekday"], cell["hour"])], cell
        assert hm["max"] == max(want.values())

        # seed 000 metrics and the dashboard CSV agree with the series routes
        m = c.get(f"/api/analytics/metrics?metric=dialogue-opens&{rng_q}", headers=h).json()
        assert m["series"] == [{"date": d, "value": t.counts[d]["dialogue_open"]} for d in all_days]
        assert m["total"] == grand["dialogue_open"]
        text = c.get(f"{KPIS}.csv?{rng_q}", headers=h).text
        table = list(csv.DictReader(io.StringIO(text)))
        assert [row["date"] for row in table] == all_days
        for row in table:
            assert int(row["command_executions"]) == t.counts[row["date"]]["command_executed"]
            assert int(row["events"]) == sum(t.counts[row["date"]].values())
        listing = c.get(KPIS, headers=h).json()
        assert {"daily-active-villages", "events-by-type"} <= {k["name"] for k in listing["kpis"]}


BAD = [
    (f"{KPIS}/dialogue-opens?start=2026-01-02", "'end' is required"),
    (f"{KPIS}/dialogue-opens?start=2026-13-01&end=2026-01-02", "not a date"),
    (f"{KPIS}/dialogue-opens?start=2026-01-1&end=2026-01-02", "not a date"),
    (f"{KPIS}/dialogue-opens?start=2026-01-05&end=2026-01-02", "before"),
    (f"{KPIS}/dialogue-opens?start=2020-01-01&end=2026-01-02", "maximum"),
    (f"{KPIS}/no-such-kpi?start=2026-01-01&end=2026-01-02", "unknown KPI"),
    (f"{KPIS}/session-duration?start=2026-01-01&end=2026-01-02&metric=p99", "metric"),
    (f"{KPIS}/daily-active-villages?start=2026-01-01&end=2026-01-02&granularity=hour", "granularity"),
    (f"{KPIS}/dialogue-opens?start=2026-01-01&end=2026-01-02&granularity=week", "granularity"),
    (f"{KPIS}/dialogue-opens?start=2026-01-01&end=2026-01-02&group_by=platform", "group_by"),
    (f"{KPIS}/events?start=2026-01-01&end=2026-01-02&limit=5", "limit"),
    (f"{KPIS}/events?start=2026-01-01&end=2026-01-02&group_by=event_name&limit=0", "limit"),
    (f"{KPIS}/events?start=2026-01-01&end=2026-01-02&group_by=event_name&limit=x", "limit"),
    (f"{KPIS}/events?start=2026-01-01&end=2026-01-02&event_name=nope", "event_name"),
    (f"{KPIS}/session-duration/heatmap?start=2026-01-01&end=2026-01-02", "heatmap"),
    (f"{KPIS}/nope/summary?start=2026-01-01&end=2026-01-02", "unknown KPI"),
    ("/api/analytics/metrics?start=2026-01-01&end=2026-01-02", "'metric' is required"),
    ("/api/analytics/metrics?metric=nope&start=2026-01-01&end=2026-01-02", "unknown metric"),
    ("/api/analytics/reports/dau?date=yesterday", "not a date"),
    ("/api/admin/analytics/daily-summary/?date=2026-02-30", "not a date"),
    ("/api/admin/analytics/top-services/?date_from=2026-01-03&date_to=2026-01-01", "before"),
    ("/api/admin/analytics/top-services/?date_from=2026-01-01&date_to=2026-01-03&field=a.b", "field"),
]


@pytest.mark.parametrize(("path", "detail"), BAD)
def test_validation_errors_are_clear_400s(settings: Settings, path: str, detail: str) -> None:
    with TestClient(create_app(settings)) as c:
        resp = c.get(path, headers=auth("admin" if "/admin/" in path else "staff"))
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["error"] == "bad_request" and detail in body["detail"], body


ADMIN_BAD = [
    "/api/analytics/reports/events?format=pdf",
    "/api/analytics/reports/events?start=2026-01-05&end=2026-01-01",
    "/api/analytics/reports/events?event_type=nope",
    "/api/admin/analytics/export/?date=2026-1-1",
    "/api/admin/analytics/export/?limit=0",
]


@pytest.mark.parametrize("path", ADMIN_BAD)
def test_export_validation_errors(settings: Settings, path: str) -> None:
    with TestClient(create_app(settings)) as c:
        resp = c.get(path, headers=auth("admin"))
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] == "bad_request"


READS = [f"{KPIS}/dialogue-opens?start=2026-01-01&end=2026-01-02", f"{KPIS}",
         f"{KPIS}/events/summary?start=2026-01-01&end=2026-01-02",
         "/api/analytics/reports/dau",
         "/api/analytics/metrics?metric=events&start=2026-01-01&end=2026-01-02"]
EXPORTS = ["/api/analytics/reports/events?format=csv&start=2026-01-01&end=2026-01-01",
           "/api/admin/analytics/export/?date=2026-01-01",
           "/api/admin/analytics/daily-summary/?date=2026-01-01",
           "/api/admin/analytics/active-users/?date=2026-01-01",
           "/api/admin/analytics/top-services/?date_from=2026-01-01&date_to=2026-01-01"]


def test_roles(settings: Settings) -> None:
    expired = tokens.issue(JWT_SECRET, "admin", ttl_s=-10)
    with TestClient(create_app(settings)) as c:
        for path in READS + EXPORTS:
            resp = c.get(path)
            assert resp.status_code == 401 and resp.json()["error"] == "unauthorized", path
            assert resp.headers["www-authenticate"] == "Bearer"
            for bad in ("Bearer not-a-jwt", f"Bearer {expired}", f"Bearer {tokens.issue('another-secret-that-is-long-enough-32b', 'admin')}",
                        f"Basic {tokens.issue(JWT_SECRET, 'admin')}"):
                resp = c.get(path, headers={"Authorization": bad})
                assert resp.status_code == 401, (path, bad)
                assert set(resp.json()) == {"error", "detail"}
            resp = c.get(path, headers=auth("viewer"))
            assert resp.status_code == 403 and resp.json()["error"] == "forbidden", path
            assert c.get(path, headers=auth("admin")).status_code == 200, path
        for path in READS:
            assert c.get(path, headers=auth("staff")).status_code == 200, path
        for path in EXPORTS:
            resp = c.get(path, headers=auth("staff"))
            assert resp.status_code == 403 and resp.json()["error"] == "forbidden", path


def test_breakdown_cells_under_k_villages_are_suppressed(settings: Settings, redis_url: str,
                                                         rng: random.Random) -> None:
    now = int(time.time() * 1000)
    # yesterday noon: 3 villages; today: 8 villages (k = 5 by default)
    yesterday = (now // 86_400_000 - 1) * 86_400_000 + 12 * HOUR
    few = [event("command_executed", f"few-{i}", yesterday + i * 1000, None,
                 {"command": "build", "success": True}, rng) for i in range(3)]
    many_t = max(now - HOUR, (now // 86_400_000) * 86_400_000 + 1000)
    many = [event("command_executed", f"many-{i}", many_t - i * 1000, None,
                  {"command": "trade", "success": True}, rng) for i in range(8)]
    load(settings, redis_url, few + many)
    d1, d2 = day(yesterday), day(many_t)
    q = f"start={d1}&end={d2}"
    with TestClient(create_app(settings)) as c:
        h = auth()
        rows = c.get(f"{KPIS}/events-by-type?{q}", headers=h).json()
        assert rows[0] == {"date": d1, "event_name": "command_executed", "value": None, "suppressed": True}
        assert rows[1] == {"date": d2, "event_name": "command_executed", "value": 8}
        hourly = c.get(f"{KPIS}/command-executions?{q}&granularity=hour", headers=h).json()
        assert all(row["value"] is None and row["suppressed"] for row in hourly if row["date"] == d1)
        assert sum(row["value"] for row in hourly if row["date"] == d2) == 8
        # day totals are not breakdowns: the seed-003 routes keep their numeric contract
        assert c.get(f"{KPIS}/command-executions?{q}", headers=h).json()[0]["value"] == 3
        summary = c.get(f"/api/admin/analytics/daily-summary/?date={d1}", headers=auth("admin")).json()
        assert summary["suppressed"] and summary["events_by_type"] == {"command_executed": None}
        assert summary["total_events"] == 3 and summary["unique_users"] == 3
        top = c.get(f"/api/admin/analytics/top-services/?date_from={d1}&date_to={d2}&field=command",
                    headers=auth("admin")).json()["top_services"]
        assert top == [{"payload__command": "trade", "count": 8}]  # "build": 3 villages < k
    with TestClient(create_app(Settings(**{**settings.__dict__, "kpi_min_group_size": 1}))) as c:
        rows = c.get(f"{KPIS}/events-by-type?{q}", headers=auth()).json()
        assert rows[0]["value"] == 3


def test_cache_lifetimes_short_for_open_days_long_for_closed(settings: Settings, redis_url: str,
                                                             r: redis.Redis, rng: random.Random) -> None:
    clock = Clock()
    today = datetime.fromtimestamp(clock.now, tz=timezone.utc).date()
    closed = today - timedelta(days=10)
    app = create_app(settings, clock=clock)
    open_q = f"{KPIS}/dialogue-opens?start={today - timedelta(days=1)}&end={today}"
    closed_q = f"{KPIS}/dialogue-opens?start={closed - timedelta(days=3)}&end={closed}"
    with TestClient(app) as c:
        h = auth()
        first = c.get(open_q, headers=h)
        assert first.headers["x-cache"] == "miss" and "max-age=60" in first.headers["cache-control"]
        assert c.get(open_q, headers=h).headers["x-cache"] == "hit"
        assert c.get(closed_q, headers=h).headers["x-cache"] == "miss"
        resp = c.get(closed_q, headers=h)
        assert resp.headers["x-cache"] == "hit" and "max-age=3600" in resp.headers["cache-control"]

        # new data for today: hidden while the entry lives, visible once it expires
        now = int(clock.now * 1000)
        load(settings, redis_url, [event("dialogue_open", f"v{i}", now - 60_000, None,
                                         {"dialogue_id": "elder"}, rng) for i in range(6)])
        assert c.get(open_q, headers=h).json()[-1]["value"] == 0
        clock.now += 59
        assert c.get(open_q, headers=h).headers["x-cache"] == "hit"
        clock.now += 2
        resp = c.get(open_q, headers=h)
        assert resp.headers["x-cache"] == "miss" and resp.json()[-1]["value"] == 6

        clock.now += 3000  # 3061 s after the closed range was cached: still a hit
        assert c.get(closed_q, headers=h).headers["x-cache"] == "hit"
        clock.now += 600
        assert c.get(closed_q, headers=h).headers["x-cache"] == "miss"

    # a day becomes closed once the late window after its end has passed
    from kpi_api.cache import ttl_for
    end_of_day = datetime.combine(closed, datetime.min.time(), tzinfo=timezone.utc).timestamp() + 86_400
    assert ttl_for(closed, end_of_day + settings.late_window_hours * 3600 - 1, settings) == 60
    assert ttl_for(closed, end_of_day + settings.late_window_hours * 3600 + 1, settings) == 3600


def test_rate_limit_per_token(settings: Settings, r: redis.Redis) -> None:
    clock = Clock()
    clock.now = (clock.now // 60) * 60 + 1  # start of a window, so the test stays inside one
    s = Settings(**{**settings.__dict__, "kpi_rate_limit_per_minute": 3})
    path = f"{KPIS}/events?start=2026-01-01&end=2026-01-02"
    a = tokens.issue(JWT_SECRET, "staff", "alice")
    b = tokens.issue(JWT_SECRET, "staff", "bob")
    with TestClient(create_app(s, clock=clock)) as c:
        for _ in range(3):
            assert c.get(path, headers={"Authorization": f"Bearer {a}"}).status_code == 200
        resp = c.get(path, headers={"Authorization": f"Bearer {a}"})
        assert resp.status_code == 429 and resp.json()["error"] == "rate_limited"
        assert 1 <= int(resp.headers["retry-after"]) <= 60
        assert c.get(path, headers={"Authorization": f"Bearer {b}"}).status_code == 200
        keys = [k.decode() for k in r.scan_iter("*")]  # every primary on a cluster
        assert any(token_digest(a) in k for k in keys)
        assert not any(a in k or "alice" in k for k in keys)
        clock.now += 60
        assert c.get(path, headers={"Authorization": f"Bearer {a}"}).status_code == 200


def test_dashboard_switch_off_answers_404_for_the_page_and_its_assets(settings: Settings) -> None:
    paths = ["/dashboard", "/dashboard/assets/dashboard.js", "/dashboard/assets/favicon.svg"]
    with TestClient(create_app(settings)) as c:
        on = [c.get(p) for p in paths]
    assert [resp.status_code for resp in on] == [200, 200, 200]
    assert on[2].headers["content-type"].startswith("image/svg+xml")
    assert 'rel="icon"' in on[0].text
    off = Settings(**{**settings.__dict__, "dashboard_enabled": False})
    with TestClient(create_app(off)) as c:
        for path in paths:
            resp = c.get(path)
            assert resp.status_code == 404 and set(resp.json()) == {"error", "detail"}, path
        assert c.get("/internal/analytics/kpis", headers={
            "Authorization": "Bearer " + tokens.issue(JWT_SECRET, "staff")}).status_code == 200
    assert Settings.from_env({"DASHBOARD_ENABLED": "false"}).dashboard_enabled is False
