"""The dashboard's CSV export holds every daily KPI the active profile declares, with exact values.

Events of the profile's catalog go through the real collector and worker; the CSV's header is the
profile's declared KPIs (seed 000: searches and installs, not seed 003's villages and dialogues),
and each column matches the truth computed from the events sent (``tests.test_profiles.truth``)
and the KPI's own route.
"""

from __future__ import annotations

import csv
import io
import random
import time

import pytest
import redis
from starlette.testclient import TestClient

from kpi_api.app import create_app as kpi_app
from schemas import profiles
from schemas.settings import Settings
from scripts.seed_traffic import profile_events
from tests.kpi_helpers import auth
from tests.test_profiles import HOUR, _day, send_and_apply, truth

KPIS = "/internal/analytics/kpis"
HEADERS = {
    "seed000": ["date", "total_searches", "unique_searches", "search_results", "installs", "install_count", "active_servers",
                "active_users", "events", "weekly_active_villages", "monthly_active_villages"],
    "seed003": ["date", "daily_active_villages", "session_duration_avg_s", "session_duration_p50_s",
                "session_duration_p95_s", "village_retention_d1", "village_retention_d7",
                "village_retention_d30", "total_villages", "new_villages", "dialogue_opens",
                "command_executions", "commands_by_name", "dialogues_by_id", "events",
                "weekly_active_villages", "monthly_active_villages"],
}


@pytest.mark.parametrize("name", sorted(HEADERS))
def test_csv_holds_the_profiles_daily_kpis(
    name: str, env: dict[str, str], r: redis.Redis, rng: random.Random
) -> None:
    settings = Settings.from_env({**env, "ANALYTICS_PROFILE": name})
    profile = profiles.load(name)
    now = int(time.time() * 1000)
    events = profile_events(profile, actors=60, count=2_000, start_ms=now - 40 * HOUR,
                            end_ms=now - 2 * HOUR, seed=rng.randrange(1 << 30))
    send_and_apply(r, settings, events, "csv-test")
    days = sorted({_day(e) for e in events})
    span = f"start={days[0]}&end={days[-1]}"
    with TestClient(kpi_app(settings), headers=auth()) as k:
        resp = k.get(f"{KPIS}.csv?{span}")
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv"), resp.text
        table = list(csv.reader(io.StringIO(resp.text)))
        assert table[0] == HEADERS[name]
        rows = [dict(zip(table[0], row)) for row in table[1:]]
        assert [row["date"] for row in rows] == days
        for kpi in profile.kpis:
            col = kpi.name.replace("-", "_")
            if kpi.kind in ("session", "retention"):  # estimates: the CSV says what the route says
                suffix, extra = (("_avg_s", "&metric=avg") if kpi.kind == "session" else ("_d1", "&after=1"))
                route = k.get(f"{KPIS}/{kpi.name}?{span}{extra}").json()
                assert [row[col + suffix] for row in rows] == ["" if x["value"] is None else str(x["value"])
                                                               for x in route], kpi.name
                continue
            want = truth(kpi, events, days)
            for row in rows:
                got = float(row[col])
                if kpi.kind in ("uniques", "total_actors", "new_actors"):
                    assert abs(got - want[row["date"]]) <= max(1, 0.02 * want[row["date"]]), (col, row)
                else:
                    assert got == want[row["date"]], (col, row)
        # the built-in rolling actives: the last day's weekly number is the distinct actors of the range
        exact = len({e["anon_village_id"] for e in events})
        assert abs(int(rows[-1]["weekly_active_villages"]) - exact) <= max(1, 0.02 * exact)
