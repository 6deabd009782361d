"""The admin import path: history older than the late window counts, and only admins may send it."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from datetime import datetime, timezone

import redis
from starlette.testclient import TestClient

from aggregator.worker import Worker, pending_total
from collector import import_cli
from collector.app import create_app
from infra import tokens
from schemas import keyspace
from schemas.settings import Settings
from scripts.simulate import batch, generate
from tests import services
from tests.conftest import JWT_SECRET, WRITE_KEY

DAY = 86_400_000
IMPORT = "/internal/analytics/import"


def _day(ev: dict) -> str:
    return datetime.fromisoformat(ev["ts_utc"].replace("Z", "+00:00")).astimezone(timezone.utc).date().isoformat()


def _counts(r: redis.Redis, s: Settings, name: str, days: set[str]) -> dict[str, int]:
    return {
        d: sum(int(r.hget(keyspace.counts(i, d), name) or 0) for i in range(s.stream_shards))
        for d in days
    }


def test_imported_history_counts_once_and_the_same_events_sent_normally_are_late(
    r: redis.Redis, settings: Settings, rng: random.Random
) -> None:
    now = int(time.time() * 1000)
    old = generate(villages=30, sessions=150, start_ms=now - 20 * DAY, end_ms=now - 10 * DAY,
                   seed=rng.randrange(1 << 30))
    live = generate(villages=30, sessions=150, start_ms=now - 25 * DAY, end_ms=now - 15 * DAY,
                    seed=rng.randrange(1 << 30))
    admin = {"Authorization": "Bearer " + tokens.issue(JWT_SECRET, role="admin")}
    with TestClient(create_app(settings)) as c:
        for i in range(0, len(old), 400):
            body = batch(old[i : i + 400])
            resp = c.post(IMPORT, json=body, headers=admin)
            assert resp.status_code == 202, resp.text
            assert resp.json() == {"accepted": len(body["events"]), "duplicates": 0, "late": 0, "rejected": []}
        # a re-run of the same import is answered as duplicates, not counted twice
        again = c.post(IMPORT, json=batch(old[:400]), headers=admin)
        assert again.json() == {"accepted": 0, "duplicates": 400, "late": 0, "rejected": []}
        # the same age of event through the ordinary route is late: kept aside, not counted
        resp = c.post("/api/analytics/events", json=batch(live[:400]), headers={"X-Write-Key": WRITE_KEY})
        assert resp.status_code == 202 and resp.json()["accepted"] == 400
    w = Worker(r, settings, consumer="import-test")
    w.run(burst=True)
    assert (w.applied, w.late) == (len(old), 400)
    assert pending_total(r, settings) == 0

    days = {_day(e) for e in old} | {_day(e) for e in live[:400]}
    for name in ("dialogue_open", "command_executed", "session_start"):
        want = Counter(_day(e) for e in old if e["event_name"] == name)
        assert _counts(r, settings, name, days) == {d: want.get(d, 0) for d in days}, name
    late = sum(r.xlen(keyspace.late_stream(i)) for i in range(settings.stream_shards))
    assert late >= 1  # entries, each holding several of the 400 late events
    assert sum(int(r.hget(keyspace.shard_stats(i), "late") or 0) for i in range(settings.stream_shards)) == 400


def test_only_an_admin_token_opens_the_import_path(settings: Settings, r: redis.Redis) -> None:
    now = int(time.time() * 1000)
    events = generate(villages=2, sessions=2, start_ms=now - 10 * DAY, end_ms=now - 9 * DAY, seed=1)
    body = batch(events)
    staff = "Bearer " + tokens.issue(JWT_SECRET, role="staff")
    forged = "Bearer " + tokens.issue("a-different-secret-of-32-bytes-or-more", role="admin")
    with TestClient(create_app(settings)) as c:
        cases = [
            ({"X-Write-Key": WRITE_KEY}, 401),  # a write key ships in clients: never an admin
            ({}, 401),
            ({"Authorization": forged}, 401),
            ({"Authorization": staff}, 403),
        ]
        for headers, status in cases:
            resp = c.post(IMPORT, json=body, headers=headers)
            assert resp.status_code == status, (headers, resp.text)
            assert resp.json()["error"] in ("unauthorized", "forbidden")
        bad = c.post(IMPORT, content=b"{", headers={
            "Authorization": "Bearer " + tokens.issue(JWT_SECRET, role="admin"),
            "Content-Type": "application/json"})
        assert bad.status_code == 400 and bad.json()["error"] == "malformed"
    assert all(r.xlen(keyspace.stream(i)) == 0 for i in range(settings.stream_shards))


def test_import_command_loads_a_file_and_a_second_run_adds_nothing(
    env: dict[str, str], settings: Settings, r: redis.Redis, tmp_path, capsys
) -> None:
    now = int(time.time() * 1000)
    events = generate(villages=10, sessions=60, start_ms=now - 30 * DAY, end_ms=now - 5 * DAY, seed=7)
    bad = dict(events[0], event_id="7c1d6f0e-0000-4000-8000-000000000001", ts_utc="yesterday")
    path = tmp_path / "history.ndjson"
    lines = [json.dumps(e) for e in events]
    path.write_text("\n".join(lines[:5] + [""] + lines[5:] + [json.dumps(bad)]) + "\n")
    token = tokens.issue(JWT_SECRET, role="admin")
    svc = services.collector(env)
    try:
        args = [str(path), "--url", svc.url, "--token", token, "--batch", "50"]
        assert import_cli.main(args) == 1  # one line rejected
        out = capsys.readouterr()
        assert json.loads(out.out) == {"accepted": len(events), "duplicates": 0, "rejected": 1}
        assert f"line {len(events) + 2}: $.events[" in out.err and ".ts_utc" in out.err
        assert import_cli.main(args) == 1
        assert json.loads(capsys.readouterr().out) == {
            "accepted": 0, "duplicates": len(events), "rejected": 1}
    finally:
        svc.stop()
    Worker(r, settings, consumer="import-cli").run(burst=True)
    days = {_day(e) for e in events}
    want = Counter(_day(e) for e in events if e["event_name"] == "dialogue_open")
    assert _counts(r, settings, "dialogue_open", days) == {d: want.get(d, 0) for d in days}


def test_imported_history_without_sessions_refreshes_the_closed_days_rollups(
    r: redis.Redis, settings: Settings, rng: random.Random
) -> None:
    """Every kind keeps closed-day rollups: an import that adds only counts and actors to a closed
    day (no session sketch) must still be served, not the value rolled up before it."""
    from kpi_api.app import create_app as kpi_app
    from scripts.simulate import event
    from tests.kpi_helpers import auth

    now = int(time.time() * 1000)
    ts = (now // DAY - 10) * DAY + 12 * 3_600_000
    day = datetime.fromtimestamp(ts / 1000, timezone.utc).date().isoformat()
    admin = {"Authorization": "Bearer " + tokens.issue(JWT_SECRET, role="admin")}

    def imported(villages: list[str]) -> None:
        events = [event("dialogue_open", v, ts + i, None, {"dialogue_id": "intro"}, rng)
                  for i, v in enumerate(villages)]
        with TestClient(create_app(settings)) as c:
            resp = c.post(IMPORT, json=batch(events), headers=admin)
            assert resp.status_code == 202 and resp.json()["accepted"] == len(events), resp.text
        Worker(r, settings, consumer="import-rollups").run(burst=True)

    def served() -> tuple[int, int]:
        q = f"start={day}&end={day}"
        with TestClient(kpi_app(settings), headers=auth()) as k:  # a fresh app: no cached answers
            opens = k.get(f"/internal/analytics/kpis/dialogue-opens?{q}").json()
            dav = k.get(f"/internal/analytics/kpis/daily-active-villages?{q}").json()
        return opens[0]["value"], dav[0]["value"]

    imported([f"v{i}" for i in range(3)])
    assert served() == (3, 3)  # the closed day is rolled up now
    imported([f"w{i}" for i in range(4)])
    assert served() == (7, 7)
