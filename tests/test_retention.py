"""The retention kind against exact ground truth: of day D's actors, the share active on D+N.

Events go through the real worker into the real server's daily HLLs; the answer is read over the
KPI API's generic route (``village-retention``), and compared with the exact share computed from
the sets of actors sent, within the error the kind states (``kinds.retention.error_bound``).
"""

from __future__ import annotations

import random
from datetime import date, datetime, timedelta, timezone

import pytest
import redis
from starlette.testclient import TestClient

from aggregator.worker import Worker
from kinds import retention
from kpi_api.app import create_app
from schemas.days import DAY_MS, day_start_ms
from schemas.settings import Settings
from tests.kpi_helpers import Clock, auth
from tests.streamfeed import append, stored

CHUNK = 2000


def _activity(n: int, rng: random.Random, today: date) -> dict[date, set[str]]:
    """Cohort day D = today - 31 with n actors; some come back on D+1, D+7, D+30, D+31 (today), new ones too."""
    d0 = today - timedelta(days=31)
    cohort = [f"v{i:07d}" for i in range(n)]
    days = {d0: set(cohort)}
    for offset, kept in ((1, 0.40), (7, 0.25), (30, 0.10), (31, 0.15)):
        back = {a for a in cohort if rng.random() < kept}
        new = {f"w{offset}-{i:07d}" for i in range(n // 5)}
        days[d0 + timedelta(days=offset)] = back | new
    return days


def _feed(r: redis.Redis, settings: Settings, days: dict[date, set[str]], rng: random.Random) -> None:
    for d, actors in days.items():
        start = day_start_ms(d)
        events = [stored("village_active", a, start + rng.randrange(DAY_MS)) for a in actors]
        for i in range(0, len(events), CHUNK):
            append(r, settings, events[i : i + CHUNK])
    Worker(r, settings, consumer="retention").run(burst=True)


def _exact(days: dict[date, set[str]], d: date, after: int) -> tuple[float, int, int, int]:
    a, b = days.get(d, set()), days.get(d + timedelta(days=after), set())
    return len(a & b) / len(a), len(a), len(b), len(a | b)


@pytest.mark.parametrize("n", [1_000, 10_000, 100_000])
def test_retention_within_its_stated_error_of_exact(
    n: int, r: redis.Redis, settings: Settings, rng: random.Random
) -> None:
    today = datetime.now(timezone.utc).date()
    days = _activity(n, rng, today)
    _feed(r, settings, days, rng)
    d0 = min(days)
    clock = Clock()
    span = f"start={d0}&end={d0 + timedelta(days=1)}"
    with TestClient(create_app(settings, clock=clock), headers=auth()) as k:
        for after in retention.AFTER:
            resp = k.get(f"/internal/analytics/kpis/village-retention?{span}&after={after}")
            assert resp.status_code == 200, resp.text
            rows = resp.json()
            assert [row["date"] for row in rows] == [d0.isoformat(), (d0 + timedelta(days=1)).isoformat()]
            exact, *sizes = _exact(days, d0, after)
            bound = retention.error_bound(*sizes)
            got = rows[0]["value"]
            print(f"n={n} after={after}: exact {exact:.4f} got {got} bound {bound:.4f}")
            assert 0 <= got <= 1 and abs(got - exact) <= bound + 1e-4, (after, got, exact, bound)
        # the stated bound is a real constraint: a few percentage points, not "anything in 0..1"
        assert retention.error_bound(*_exact(days, d0, 1)[1:]) < 0.08
        # D+1's cohort 30 days on is today: due; D+2's is tomorrow: still to come
        later = k.get(f"/internal/analytics/kpis/village-retention?start={d0 + timedelta(days=1)}"
                      f"&end={d0 + timedelta(days=2)}&after=30").json()
        exact, *sizes = _exact(days, d0 + timedelta(days=1), 30)
        assert abs(later[0]["value"] - exact) <= retention.error_bound(*sizes) + 1e-4
        assert later[1] == {"date": (d0 + timedelta(days=2)).isoformat(), "value": None}


def test_days_still_to_come_are_null_and_bad_offsets_are_400(
    r: redis.Redis, settings: Settings, rng: random.Random
) -> None:
    today = datetime.now(timezone.utc).date()
    yesterday = today - timedelta(days=1)
    days = {yesterday: {"a", "b", "c", "d"}, today: {"a", "b", "x"}}
    _feed(r, settings, days, rng)
    clock = Clock()
    with TestClient(create_app(settings, clock=clock), headers=auth()) as k:
        path = f"/internal/analytics/kpis/village-retention?start={yesterday}&end={today}"
        first = k.get(path)
        assert first.json() == [{"date": yesterday.isoformat(), "value": 0.5},  # small sets: exact
                                {"date": today.isoformat(), "value": None}]
        # the answer reads today (D+1), an open day: it is cached only briefly
        assert first.headers["cache-control"] == f"private, max-age={settings.kpi_cache_seconds}"
        summary = k.get(path.replace("village-retention?", "village-retention/summary?")).json()
        assert summary["total"] == 0.5
        for bad, detail in (("after=0", "out of range"), ("after=x", "not an integer"),
                            ("after=366", "out of range")):
            resp = k.get(f"{path}&{bad}")
            assert resp.status_code == 400 and detail in resp.json()["detail"], (bad, resp.text)
        resp = k.get(f"/internal/analytics/kpis/dialogue-opens?start={today}&end={today}&after=1")
        assert resp.status_code == 400 and "retention" in resp.json()["detail"]
        listed = {row["name"]: row for row in k.get("/internal/analytics/kpis").json()["kpis"]}
        assert listed["village-retention"]["declared_kind"] == "retention"
        assert listed["village-retention"]["after"] == [1, 7, 30]


def test_a_later_day_changes_an_answer_that_was_still_to_come(
    r: redis.Redis, settings: Settings, rng: random.Random
) -> None:
    """Time passing turns a null into a share: the short cache lifetime of an open answer."""
    today = datetime.now(timezone.utc).date()
    _feed(r, settings, {today: {"a", "b"}}, rng)
    clock = Clock()
    with TestClient(create_app(settings, clock=clock), headers=auth()) as k:
        path = f"/internal/analytics/kpis/village-retention?start={today}&end={today}"
        assert k.get(path).json() == [{"date": today.isoformat(), "value": None}]
        tomorrow = today + timedelta(days=1)
        tomorrow_ms = day_start_ms(tomorrow) + 3_600_000
        r.flushdb()
        _feed(r, settings, {today: {"a", "b"}, tomorrow: {"b"}}, rng)
        clock.now = tomorrow_ms / 1000 + settings.kpi_cache_seconds + 1
        assert k.get(path).json() == [{"date": today.isoformat(), "value": 0.5}]
