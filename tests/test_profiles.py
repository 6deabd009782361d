"""Each seed's profile: events of its catalog go through the pipeline and its KPIs match ground truth."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from aggregator.worker import Worker
from collector.app import create_app
from kinds import retention
from kpi_api.app import create_app as kpi_app
from infra import tokens
from schemas import profiles
from schemas.kpis import Kpi
from schemas.settings import Settings
from schemas.sketch import exact_quantile
from scripts.seed_traffic import profile_events
from scripts.simulate import batch
from tests.conftest import JWT_SECRET, WRITE_KEY
from tests.test_privacy_collector import everything

HOUR = 3_600_000
FREE_TEXT = frozenset({"query", "booking_id"})  # what the generators send as text or personal ids
BUILTIN = {"platform": "platform", "app_version": "app_version", "event_name": "event_name"}


def _day(ev: dict[str, Any]) -> str:
    ts = datetime.fromisoformat(ev["ts_utc"].replace("Z", "+00:00"))
    return ts.astimezone(timezone.utc).date().isoformat()


def _dim(ev: dict[str, Any], dim: str) -> str | None:
    if dim in BUILTIN:
        return str(ev[BUILTIN[dim]])
    value = ev["payload"].get(dim)
    return None if value is None else str(value)


def truth(kpi: Kpi, events: list[dict[str, Any]], days: list[str]) -> dict[str, Any]:
    """The KPI computed straight from the events sent, one value per day."""
    mine = [e for e in events if not kpi.events or e["event_name"] in kpi.events]
    out: dict[str, Any] = {}
    for d in days:
        todays = [e for e in mine if _day(e) == d]
        if kpi.kind == "uniques":
            values = {e["anon_village_id"] if not kpi.field else e["payload"].get(kpi.field) for e in todays}
            out[d] = len(values - {None})
        elif kpi.kind == "count":
            out[d] = len(todays)
        elif kpi.kind == "sum":
            out[d] = sum(round(e["payload"][kpi.field] * kpi.scale) for e in todays) / kpi.scale
        elif kpi.kind == "top":
            out[d] = sum(1 for e in todays if e["payload"].get(kpi.field) is not None)
        elif kpi.kind == "retention":  # after=1: the share of d's actors active again the next day
            nxt = (date.fromisoformat(d) + timedelta(days=1)).isoformat()
            cohort = {e["anon_village_id"] for e in todays}
            again = {e["anon_village_id"] for e in mine if _day(e) == nxt}
            due = nxt <= datetime.now(timezone.utc).date().isoformat()
            out[d] = (len(cohort & again) / len(cohort), len(cohort), len(again), len(cohort | again)) if due else None
        elif kpi.kind in ("total_actors", "new_actors"):  # every actor sent up to d, or first seen on d
            upto = {e["anon_village_id"] for e in mine if _day(e) <= d}
            before = {e["anon_village_id"] for e in mine if _day(e) < d}
            out[d] = len(upto) if kpi.kind == "total_actors" else len(upto - before)
    return out


def _sessions(events: list[dict[str, Any]]) -> dict[str, list[int]]:
    starts, ends = {}, {}
    for e in events:
        ts = int(datetime.fromisoformat(e["ts_utc"].replace("Z", "+00:00")).timestamp() * 1000)
        if e["event_name"] == "session_start":
            starts[e["session_id"]] = (ts, _day(e))
        elif e["event_name"] == "session_end":
            ends[e["session_id"]] = ts
    by_day: dict[str, list[int]] = defaultdict(list)
    for sid, (ts, d) in starts.items():
        by_day[d].append(max(0, ends[sid] - ts))
    return by_day


def send_and_apply(r: redis.Redis, settings: Settings, events: list[dict[str, Any]], consumer: str) -> None:
    """Events through the collector (all must be accepted), then one worker applies them."""
    with TestClient(create_app(settings)) as c:
        for i in range(0, len(events), 500):
            resp = c.post("/api/analytics/events", json=batch(events[i : i + 500]),
                          headers={"X-Write-Key": WRITE_KEY})
            assert resp.status_code == 202, resp.text
            assert resp.json()["rejected"] == [], resp.json()["rejected"][:3]
    Worker(r, settings, consumer=consumer).run(burst=True)


@pytest.mark.parametrize("name", profiles.NAMES)
def test_profile_kpis_match_ground_truth(
    name: str, env: dict[str, str], r: redis.Redis, redis_url: str, rng: random.Random
) -> None:
    settings = Settings.from_env({**env, "ANALYTICS_PROFILE": name})
    profile = profiles.load(name)
    now = int(time.time() * 1000)
    events = profile_events(profile, actors=80, count=3_000, start_ms=now - 40 * HOUR,
                            end_ms=now - 6 * HOUR, seed=rng.randrange(1 << 30))
    send_and_apply(r, settings, events, "profile-test")

    # nothing raw at rest: no actor id, and no value of a field the profile hashes (free text)
    blob = b"\n".join(everything(r))
    assert b"analytics:{s" in blob
    raw = {e["anon_village_id"] for e in events}
    private = FREE_TEXT | profile.hashed_fields
    raw |= {str(e["payload"][f]) for e in events for f in private if f in e["payload"]}
    assert [v for v in raw if v.encode() in blob] == []

    days = sorted({_day(e) for e in events})

    # every KPI read the way a user reads it: the KPI API's generic route, over HTTP
    token = tokens.issue(JWT_SECRET, role="staff")
    rng_q = f"start={days[0]}&end={days[-1]}"
    got: dict[str, Any] = {}
    with TestClient(kpi_app(settings), headers={"Authorization": f"Bearer {token}"}) as k:
        listed = {row["name"] for row in k.get("/internal/analytics/kpis").json()["kpis"]}
        assert {kpi.name for kpi in profile.kpis} <= listed

        def rows(path: str) -> list[dict[str, Any]]:
            resp = k.get(path)
            assert resp.status_code == 200, (path, resp.text)
            return resp.json()

        for kpi in profile.kpis:
            base = f"/internal/analytics/kpis/{kpi.name}?{rng_q}"
            if kpi.kind == "session":
                for metric in ("avg", "p50", "p95"):
                    got[f"{kpi.name}:{metric}"] = {r["date"]: r["value"] for r in rows(f"{base}&metric={metric}")}
                continue
            got[kpi.name] = {r["date"]: r["value"] for r in rows(base)}
            for dim in kpi.dimensions:
                got[f"{kpi.name}/{dim}"] = {(r["date"], r[dim]): r["value"] for r in rows(f"{base}&group_by={dim}")}
            if kpi.kind == "top":
                top = f"/internal/analytics/kpis/{kpi.name}/top?{rng_q}&limit=1000"
                got[f"{kpi.name}/table"] = rows(top)["rows"]
                if kpi.all_time:
                    got[f"{kpi.name}/all"] = rows(top + "&all_time=1")["rows"]
    for kpi in profile.kpis:
        if kpi.kind == "session":
            durations = _sessions(events)
            for d in days:
                if not durations[d]:
                    continue
                exact_avg = sum(durations[d]) / len(durations[d]) / 1000
                assert got[f"{kpi.name}:avg"][d] == pytest.approx(exact_avg, rel=0.005, abs=0.002)
                for metric, q in (("p50", 0.5), ("p95", 0.95)):
                    want = exact_quantile(durations[d], q) / 1000
                    assert got[f"{kpi.name}:{metric}"][d] == pytest.approx(want, rel=0.02)
            continue
        want = truth(kpi, events, days)
        for d in days:
            if kpi.kind in ("uniques", "total_actors", "new_actors"):
                assert abs(got[kpi.name][d] - want[d]) <= max(1, 0.02 * want[d]), (kpi.name, d)
            elif kpi.kind == "retention":
                if want[d] is None:
                    assert got[kpi.name][d] is None, (kpi.name, d)
                else:
                    exact, *sizes = want[d]
                    assert abs(got[kpi.name][d] - exact) <= retention.error_bound(*sizes) + 1e-4, (kpi.name, d)
            elif kpi.kind == "sum":
                assert got[kpi.name][d] == pytest.approx(want[d], abs=1 / kpi.scale), (kpi.name, d)
            else:
                assert got[kpi.name][d] == want[d], (kpi.name, d)
        mine = [e for e in events if not kpi.events or e["event_name"] in kpi.events]
        for dim in kpi.dimensions:
            expected = Counter((_day(e), _dim(e, dim)) for e in mine if _dim(e, dim) is not None)
            observed = {k: v for k, v in got[f"{kpi.name}/{dim}"].items() if v}
            assert observed == dict(expected), (kpi.name, dim)
        if kpi.kind == "top":
            expected_table = Counter(e["payload"][kpi.field] for e in mine if e["payload"].get(kpi.field))
            assert {row["key"]: row["value"] for row in got[f"{kpi.name}/table"]} == dict(expected_table)
            values = [row["value"] for row in got[f"{kpi.name}/table"]]
            assert values == sorted(values, reverse=True)
            if kpi.all_time:
                assert got[f"{kpi.name}/all"] == got[f"{kpi.name}/table"]
