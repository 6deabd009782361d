"""Helpers for the KPI API tests: load generated events through the real collector and workers,
and compute their ground truth independently of the pipeline."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from starlette.testclient import TestClient

import collector.app
from aggregator.worker import Worker
from infra.connection import open_sync
from infra import tokens
from schemas.settings import Settings
from scripts.simulate import batch
from tests.conftest import JWT_SECRET, WRITE_KEY

HOUR = 3_600_000


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def day(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def load(settings: Settings, redis_url: str, events: list[dict[str, Any]]) -> None:
    """POST the events to an in-process collector, then drain the streams with a burst worker."""
    with TestClient(collector.app.create_app(settings)) as c:
        for i in range(0, len(events), 500):
            resp = c.post("/api/analytics/events", json=batch(events[i : i + 500]),
                          headers={"X-Write-Key": WRITE_KEY})
            assert resp.status_code == 202, resp.text
            assert not resp.json()["rejected"], resp.json()["rejected"][:3]
    client = open_sync(redis_url)  # a cluster client on a cluster
    try:
        Worker(client, settings, consumer="t").run(burst=True)
    finally:
        client.close()


class Clock:
    """An injectable clock (epoch seconds) for the KPI API: tests move time instead of sleeping."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def auth(role: str = "staff", subject: str = "tester") -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.issue(JWT_SECRET, role, subject)}"}


@dataclass
class Truth:
    villages: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    hourly: dict[tuple[str, int], Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    durations: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    payload_values: dict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    payload_counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    events: list[dict[str, Any]] = field(default_factory=list)


def profile_traffic(profile: str, redis_url: str, env: dict[str, str], seed: int,
                    count: int = 1500) -> list[dict[str, Any]]:
    """``count`` events of 60 actors of a profile's catalog, 40 to 5 hours ago, sent and applied."""
    from schemas import profiles
    from scripts.seed_traffic import profile_events

    now = int(time.time() * 1000)
    events = profile_events(profiles.load(profile), actors=60, count=count, start_ms=now - 40 * HOUR,
                            end_ms=now - 5 * HOUR, seed=seed)
    load(Settings.from_env(env), redis_url, events)
    return events


def truth(events: list[dict[str, Any]]) -> Truth:
    t = Truth(events=events)
    starts: dict[str, int] = {}
    ends: dict[str, int] = {}
    for ev in events:
        ts = ms(ev["ts_utc"])
        d = day(ts)
        t.villages[d].add(ev["anon_village_id"])
        t.counts[d][ev["event_name"]] += 1
        t.hourly[(d, (ts // HOUR) % 24)][ev["event_name"]] += 1
        for k, v in ev["payload"].items():
            t.payload_counts[(k, str(v))] += 1
            t.payload_values[(k, str(v))].add(ev["anon_village_id"])
        if ev["event_name"] == "session_start":
            starts[ev["session_id"]] = ts
        elif ev["event_name"] == "session_end":
            ends[ev["session_id"]] = ts
    for sid, start in starts.items():
        t.durations[day(start)].append(max(0, ends[sid] - start))
    return t


def close(actual: float, expected: float, rel: float = 0.01, abs_: float = 1.0) -> bool:
    return abs(actual - expected) <= max(abs_, rel * abs(expected))
