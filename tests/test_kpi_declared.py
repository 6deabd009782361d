"""The KPI API serves the active profile's declared KPIs: listing, validation, top-N tables, k rule.

Their numbers against ground truth are checked per seed in ``test_profiles.py``; here, the rules.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

import redis
from starlette.testclient import TestClient

from kpi_api.app import create_app
from schemas import profiles
from schemas.settings import Settings
from scripts.seed_traffic import profile_events
from tests.kpi_helpers import HOUR, auth, day, load, ms


def _events(name: str, actors: int, rng: random.Random) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)
    return profile_events(profiles.load(name), actors=actors, count=600, start_ms=now - 30 * HOUR,
                          end_ms=now - 2 * HOUR, seed=rng.randrange(1 << 30))


def _seed000(env: dict[str, str], redis_url: str, rng: random.Random, actors: int,
             **extra: str) -> tuple[Settings, list[dict[str, Any]], str]:
    """Seed 000's events of ``actors`` users sent and applied: (settings, events, the range query)."""
    settings = Settings.from_env({**env, "ANALYTICS_PROFILE": "seed000", **extra})
    events = _events("seed000", actors, rng)
    load(settings, redis_url, events)
    days = sorted({day(ms(e["ts_utc"])) for e in events})
    return settings, events, f"start={days[0]}&end={days[-1]}"


def test_seed000_kpis_are_listed_served_and_validated(
    env: dict[str, str], redis_url: str, r: redis.Redis, rng: random.Random
) -> None:
    settings, events, span = _seed000(env, redis_url, rng, 40)
    installs = [e for e in events if e["event_name"] == "server_installed"]
    with TestClient(create_app(settings), headers=auth()) as k:
        listed = {row["name"]: row for row in k.get("/internal/analytics/kpis").json()["kpis"]}
        assert {kpi.name for kpi in profiles.load("seed000").kpis} <= set(listed)
        assert "dialogue-opens" not in listed  # a seed-003 count of an event seed 000 does not have
        assert listed["install-count"]["top"] and listed["install-count"]["all_time"]

        # seed 000's own route reads the same registry
        body = k.get(f"/api/analytics/metrics?metric=total-searches&{span}").json()
        want = sum(1 for e in events if e["event_name"] == "search_performed")
        assert body["total"] == want == sum(row["value"] for row in body["series"])

        table = k.get(f"/internal/analytics/kpis/install-count/top?{span}&limit=3").json()
        expected = Counter(e["payload"]["server_id"] for e in installs)
        top3 = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
        assert [(row["key"], row["value"]) for row in table["rows"]] == top3
        summary = k.get(f"/internal/analytics/kpis/installs/summary?{span}").json()
        assert summary["total"] == len(installs)

        for path, detail in [
            (f"/internal/analytics/kpis/dialogue-opens?{span}", "unknown KPI"),
            (f"/internal/analytics/kpis/total-searches/top?{span}", "not a top-N KPI"),
            (f"/internal/analytics/kpis/active-servers/top?{span}&all_time=1", "not a top-N KPI"),
            (f"/internal/analytics/kpis/installs?{span}&group_by=server_id", "not available"),
            (f"/internal/analytics/kpis/installs?{span}&group_by=platform&granularity=hour",
             "granularity"),
            (f"/internal/analytics/kpis/install-count/top?{span}&all_time=maybe", "all_time"),
        ]:
            resp = k.get(path)
            assert resp.status_code == 400, (path, resp.text)
            assert detail in resp.json()["detail"], (path, resp.json())


def test_top_table_is_suppressed_when_fewer_than_k_actors_are_behind_it(
    env: dict[str, str], redis_url: str, r: redis.Redis, rng: random.Random
) -> None:
    # three users: any cell could single one out
    settings, _, span = _seed000(env, redis_url, rng, 3, KPI_MIN_GROUP_SIZE="5")
    with TestClient(create_app(settings), headers=auth()) as k:
        rows = k.get(f"/internal/analytics/kpis/install-count/top?{span}").json()["rows"]
        assert rows and all(row["value"] is None and row["suppressed"] for row in rows)
        page = k.get(f"/internal/analytics/kpis/install-count/top?{span}&limit=2&offset=2").json()
        assert page["rows"] and all(row["value"] is None and row["suppressed"] for row in page["rows"])
        assert page["offset"] == 2  # a later page is suppressed too
        by_platform = k.get(f"/internal/analytics/kpis/installs?{span}&group_by=platform").json()
        assert by_platform and all(row["value"] is None for row in by_platform)


def test_top_table_pages_with_offset_and_says_whether_there_is_more(
    env: dict[str, str], redis_url: str, r: redis.Redis, rng: random.Random
) -> None:
    settings, events, span = _seed000(env, redis_url, rng, 40)
    expected = Counter(e["payload"]["server_id"] for e in events if e["event_name"] == "server_installed")
    ordered = sorted(expected.items(), key=lambda kv: (-kv[1], kv[0]))
    assert len(ordered) > 5  # several pages of 3
    base = "/internal/analytics/kpis/install-count/top"
    with TestClient(create_app(settings), headers=auth()) as k:
        for all_time in ("", "&all_time=1"):
            seen: list[tuple[str, int]] = []
            offset: int | None = 0
            pages = 0
            while offset is not None:
                page = k.get(f"{base}?{span}&limit=3&offset={offset}{all_time}").json()
                # the answer's fields as before, plus where this page starts and the next one
                assert {"kpi", "field", "rows"} <= set(page) and page["offset"] == offset, page
                assert page["total_rows"] == len(ordered) and page["limit"] == 3
                assert ("all_time" in page) == bool(all_time) and ("start" in page) != bool(all_time)
                assert len(page["rows"]) <= 3
                seen += [(row["key"], row["value"]) for row in page["rows"]]
                offset = page["next_offset"]
                assert offset is None or offset == page["offset"] + 3
                pages += 1
            assert seen == ordered and pages == -(-len(ordered) // 3), (seen, ordered)
        # without offset: the first page, unchanged; past the end: no rows, nothing more
        first = k.get(f"{base}?{span}&limit=3").json()
        assert [(row["key"], row["value"]) for row in first["rows"]] == ordered[:3] and first["next_offset"] == 3
        past = k.get(f"{base}?{span}&limit=3&offset={len(ordered) + 10}").json()
        assert past["rows"] == [] and past["next_offset"] is None
        for path, detail in [
            (f"{base}?{span}&offset=-1", "offset"),
            (f"{base}?{span}&offset=abc", "offset"),
            (f"{base}?{span}&offset=1.5", "offset"),
            (f"{base}?{span}&offset=99999999999", "offset"),
            (f"/internal/analytics/kpis/installs?{span}&offset=3", "offset applies to the top tables"),
        ]:
            resp = k.get(path)
            assert resp.status_code == 400, (path, resp.text)
            assert detail in resp.json()["detail"], (path, resp.json())
