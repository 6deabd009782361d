"""total-users / new-users (seed 004) and total-villages / new-villages (seed 003) against exact truth.

Events go through the real worker into the real server's daily HLLs; the answers are read over the
KPI API's generic route and compared with the exact counts of the actors sent (every actor seen up
to each day; those whose first day is that day), within the error ``kinds.first_seen`` states.
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest
import redis
from starlette.testclient import TestClient

from aggregator.worker import Worker
from kinds import first_seen
from kpi_api.app import create_app
from schemas.days import DAY_MS, day_start_ms
from schemas.settings import Settings
from tests.kpi_helpers import auth
from tests.streamfeed import append, stored

CHUNK = 2000
NAMES = {"seed003": ("total-villages", "new-villages", "village_active"),
         "seed004": ("total-users", "new-users", "page_view")}


def _activity(n: int, rng: random.Random, today: date, days: int = 10) -> dict[date, set[str]]:
    """``days`` days ending yesterday: each day n/days new actors, and some of those seen before."""
    seen: list[str] = []
    out: dict[date, set[str]] = {}
    for i in range(days):
        d = today - timedelta(days=days - i)
        new = [f"a{i}-{j:07d}" for j in range(n // days)]
        back = {a for a in seen if rng.random() < 0.3}
        out[d] = back | set(new)
        seen += new
    return out


def _feed(r: redis.Redis, settings: Settings, name: str, days: dict[date, set[str]], rng: random.Random) -> None:
    for d, actors in days.items():
        start = day_start_ms(d)
        events = [stored(name, a, start + rng.randrange(DAY_MS)) for a in actors]
        for i in range(0, len(events), CHUNK):
            append(r, settings, events[i : i + CHUNK])
    Worker(r, settings, consumer="first-seen").run(burst=True)


def _exact(days: dict[date, set[str]], d: date) -> tuple[int, int]:
    """(actors seen up to and including d, actors first seen on d)."""
    upto = set().union(*(a for day, a in days.items() if day <= d))
    before = set().union(*(a for day, a in days.items() if day < d))
    return len(upto), len(upto - before)


@pytest.mark.parametrize(("profile", "n"), [("seed003", 2_000), ("seed004", 2_000), ("seed004", 50_000)])
def test_total_and_new_actors_within_their_stated_error_of_exact(
    profile: str, n: int, env: dict[str, str], r: redis.Redis, rng: random.Random
) -> None:
    settings = Settings.from_env({**env, "ANALYTICS_PROFILE": profile})
    total_kpi, new_kpi, event = NAMES[profile]
    today = datetime.now(timezone.utc).date()
    days = _activity(n, rng, today)
    _feed(r, settings, event, days, rng)
    first, last = min(days), max(days)
    span = f"start={first - timedelta(days=1)}&end={today}"  # a day before any, and today: nothing yet
    with TestClient(create_app(settings), headers=auth()) as k:
        totals = k.get(f"/internal/analytics/kpis/{total_kpi}?{span}")
        news = k.get(f"/internal/analytics/kpis/{new_kpi}?{span}")
        assert totals.status_code == 200 and news.status_code == 200, (totals.text, news.text)
        got_total = {row["date"]: row["value"] for row in totals.json()}
        got_new = {row["date"]: row["value"] for row in news.json()}
        assert got_total[(first - timedelta(days=1)).isoformat()] == 0
        assert got_new[(first - timedelta(days=1)).isoformat()] == 0
        assert got_new[today.isoformat()] == 0
        previous = 0
        for d in sorted(days):
            total, new = _exact(days, d)
            t, nw = got_total[d.isoformat()], got_new[d.isoformat()]
            print(f"{profile} n={n} {d}: total {total} got {t}; new {new} got {nw}")
            assert abs(t - total) <= first_seen.error_bound("total_actors", total) + 1, (d, t, total)
            assert abs(nw - new) <= first_seen.error_bound("new_actors", total, previous) + 1, (d, nw, new)
            previous = total
        assert got_total[today.isoformat()] == got_total[last.isoformat()]  # nobody seen today
        # the bound is a real constraint, not "anything goes"
        assert first_seen.error_bound("total_actors", n) < 0.03 * n
        # the range's totals: the last day's total; the actors first seen within the range
        mid = first + timedelta(days=4)
        path = f"start={mid}&end={last}"
        summary = k.get(f"/internal/analytics/kpis/{new_kpi}/summary?{path}").json()
        want = _exact(days, last)[0] - _exact(days, mid - timedelta(days=1))[0]
        assert abs(summary["total"] - want) <= first_seen.error_bound("new_actors", n, n) + 1
        summary = k.get(f"/internal/analytics/kpis/{total_kpi}/summary?{path}").json()
        assert abs(summary["total"] - _exact(days, last)[0]) <= first_seen.error_bound("total_actors", n) + 1
        listed = {row["name"]: row for row in k.get("/internal/analytics/kpis").json()["kpis"]}
        assert listed[total_kpi]["declared_kind"] == "total_actors"
        assert listed[new_kpi]["declared_kind"] == "new_actors"
        resp = k.get(f"/internal/analytics/kpis/{new_kpi}?{span}&after=1")
        assert resp.status_code == 400 and "retention" in resp.json()["detail"]


def test_ever_means_within_the_metrics_retention(env: dict[str, str], r: redis.Redis, rng: random.Random) -> None:
    """Days older than METRICS_RETENTION_DAYS have expired: an actor seen only then is not counted."""
    settings = Settings.from_env({**env, "ANALYTICS_PROFILE": "seed004", "METRICS_RETENTION_DAYS": "3"})
    today = datetime.now(timezone.utc).date()
    old, recent = today - timedelta(days=5), today - timedelta(days=1)
    _feed(r, settings, "page_view", {old: {"a", "b"}, recent: {"b", "c"}}, rng)
    with TestClient(create_app(settings), headers=auth()) as k:
        rows = k.get(f"/internal/analytics/kpis/new-users?start={old}&end={recent}").json()
        by_day = {row["date"]: row["value"] for row in rows}
        # before the horizon nothing counts; b, seen only before it, is new again
        assert by_day[old.isoformat()] == 0 and by_day[recent.isoformat()] == 2
        rows = k.get(f"/internal/analytics/kpis/total-users?start={recent}&end={recent}").json()
        assert rows == [{"date": recent.isoformat(), "value": 2}]
