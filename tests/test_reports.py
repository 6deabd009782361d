"""Seed 001/002 reports and exports against ground truth, and a 1,000,000-row export that streams
without the server process growing."""

from __future__ import annotations

import csv
import io
import json
import random
import threading
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from kpi_api.app import create_app
from schemas import keyspace
from schemas.catalog import STORED_ENCODER, StoredEvent
from schemas.settings import Settings
from scripts.simulate import generate
from tests import services
from tests.kpi_helpers import HOUR, auth, close, day, load, ms, truth

K = 5


@pytest.fixture
def loaded(settings: Settings, redis_url: str, rng: random.Random) -> Any:
    now = int(time.time() * 1000)
    events = generate(villages=60, sessions=250, start_ms=now - 40 * HOUR, end_ms=now - 5 * HOUR,
                      seed=rng.randrange(1 << 30))
    load(settings, redis_url, events)
    return truth(events)


def test_reports_match_ground_truth(settings: Settings, loaded: Any) -> None:
    t = loaded
    days = sorted(t.villages)
    with TestClient(create_app(settings)) as c:
        h = auth("admin")  # seed 002's admin routes; dau reads with any role
        for d in days:
            body = c.get(f"/api/analytics/reports/dau?date={d}", headers=h).json()
            assert body["date"] == d and body["period"] == "24h" and close(body["dau"], len(t.villages[d]))
            summary = c.get(f"/api/admin/analytics/daily-summary/?date={d}", headers=h).json()
            assert summary["total_events"] == sum(t.counts[d].values())
            assert summary["events_by_type"] == dict(sorted(t.counts[d].items()))
            assert close(summary["unique_users"], len(t.villages[d])) and summary["unique_anonymous"] == 0
            active = c.get(f"/api/admin/analytics/active-users/?date={d}", headers=h).json()
            assert active["daily_active_users"] == active["total_active"] == summary["unique_users"]
        # top-N by a payload field over the range, values from fewer than k villages left out
        top = c.get(f"/api/admin/analytics/top-services/?date_from={days[0]}&date_to={days[-1]}"
                    f"&field=command&limit=3", headers=h).json()["top_services"]
        want = sorted(((v, n) for (f, v), n in t.payload_counts.items()
                       if f == "command" and len(t.payload_values[(f, v)]) >= K), key=lambda x: (-x[1], x[0]))
        assert top == [{"payload__command": v, "count": n} for v, n in want[:3]]
        default = c.get(f"/api/admin/analytics/top-services/?date_from={days[0]}&date_to={days[-1]}", headers=h)
        assert default.json()["top_services"] == []  # no event in this catalog carries a service_id

        # seed 001 CSV export: every event of the event-time range, filtered by type
        admin = auth("admin")
        d = days[1] if len(days) > 1 else days[0]
        text = c.get(f"/api/analytics/reports/events?format=csv&start={d}&end={d}", headers=admin).text
        rows = list(csv.DictReader(io.StringIO(text)))
        want_ids = sorted(ev["event_id"] for ev in t.events if day(ms(ev["ts_utc"])) == d)
        assert sorted(row["event_id"] for row in rows) == want_ids
        assert all(row["ts_utc"].startswith(d) for row in rows)
        by_id = {ev["event_id"]: ev for ev in t.events}
        for row in rows[:50]:
            ev = by_id[row["event_id"]]
            assert row["event_name"] == ev["event_name"]
            assert ev["payload"].items() <= json.loads(row["payload"]).items()  # plus catalog defaults
            assert row["anon_village_id"] != ev["anon_village_id"]  # only the pseudonym is stored
        typed = c.get(f"/api/analytics/reports/events?start={days[0]}&end={days[-1]}&event_type=dialogue_open",
                      headers=admin).text
        assert len(typed.splitlines()) - 1 == sum(t.counts[x]["dialogue_open"] for x in days)

        # seed 002 export: the seed's columns, one day, type filter and limit
        resp = c.get(f"/api/admin/analytics/export/?date={d}&event_type=command_executed", headers=admin)
        assert resp.headers["content-type"].startswith("text/csv")
        table = list(csv.reader(io.StringIO(resp.text)))
        assert table[0] == ["id", "created_at", "event_type", "user_id", "anonymous_id", "source",
                            "ip_address", "payload"]
        assert len(table) - 1 == t.counts[d]["command_executed"]
        assert {row[2] for row in table[1:]} == {"command_executed"} and {row[6] for row in table[1:]} == {""}
        limited = c.get(f"/api/admin/analytics/export/?date={d}&limit=7", headers=admin).text
        assert len(limited.splitlines()) == 8

        # XLSX: the same rows as the CSV
        resp = c.get(f"/api/analytics/reports/events?format=xlsx&start={d}&end={d}", headers=admin)
        assert resp.status_code == 200
        from openpyxl import load_workbook

        wb = load_workbook(io.BytesIO(resp.content), read_only=True)
        sheet = list(wb["events"].iter_rows(values_only=True))
        assert sheet[0][0] == "event_id" and sorted(r[0] for r in sheet[1:]) == want_ids
        wb.close()


def _rss_kb(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_million_row_export_streams_in_constant_memory(env: dict[str, str], settings: Settings,
                                                        r: redis.Redis) -> None:
    """1,000,000 stored events (written in the stream format the collector appends) exported as CSV."""
    total, per_entry = 1_000_000, 1000
    now = int(time.time() * 1000)
    today = date.fromtimestamp(now / 1000)
    payload = {"command": "build", "success": True}
    pipe = r.pipeline(transaction=False)
    for n in range(total // per_entry):
        batch = [StoredEvent(event_id=uuid.UUID(int=n * per_entry + i).hex, name="command_executed", version=1,
                             ts=now - 1000, ts_original=now - 1000, received=now, village=f"p{i % 97:04x}",
                             app_version="1.0.0", platform="web", payload=payload) for i in range(per_entry)]
        pipe.xadd(keyspace.stream(n % settings.stream_shards),
                  {keyspace.ENTRY_EVENTS: STORED_ENCODER.encode(batch)})
        if n % 50 == 49:
            pipe.execute()
    pipe.execute()
    token = auth("admin")
    api = services.kpi_api(env)
    try:
        q = f"start={today - timedelta(days=1)}&end={today + timedelta(days=1)}"
        warm = httpx.get(f"{api.url}/api/analytics/reports/events?{q}&event_type=dialogue_open",
                         headers=token, timeout=60)
        assert warm.status_code == 200
        base = _rss_kb(api.proc.pid)
        peak = [base]
        half = [0]
        progress = [0]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _rss_kb(api.proc.pid))
                if not half[0] and progress[0] >= total // 2:
                    half[0] = peak[0]
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        rows = size = 0
        try:
            with httpx.stream("GET", f"{api.url}/api/analytics/reports/events?{q}", headers=token,
                              timeout=120) as resp:
                assert resp.status_code == 200
                tail = b""
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    rows += chunk.count(b"\n")
                    progress[0] = rows
                    tail = (tail + chunk)[-200:]
        finally:
            done.set()
            sampler.join()
        assert rows == total + 1  # header + every event
        assert size > 100 * 1024 * 1024  # the body is far larger than the growth allowed below
        growth_mb = (peak[0] - base) / 1024
        assert growth_mb < 48, f"export grew the server by {growth_mb:.0f} MB"
        # constant, not merely small: the second half of the rows adds (almost) nothing
        assert half[0] and (peak[0] - half[0]) / 1024 < 8, (base, half[0], peak[0])
    finally:
        api.stop()
