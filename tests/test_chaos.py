"""Chaos: 200,000+ events through the real collector while three workers are SIGKILLed and
restarted at random moments; after draining every KPI matches the ground truth of what was sent.

Killed workers come back sometimes under their old name (they finish their own pending entries
first) and sometimes under a new one (their old entries are claimed from the dead consumer).
"""

from __future__ import annotations

import random
import signal
import threading
import time

import httpx
import redis

from infra import tokens
from schemas.settings import Settings
from schemas.sketch import exact_quantile
from scripts.simulate import batch, generate
from tests.conftest import JWT_SECRET, WRITE_KEY
from tests.services import Service, aggregator, collector, kpi_api, wait_drained
from tests.kpi_helpers import truth
from tests.streamfeed import dead_letters, pending_of, stat
from tests.workerprocs import heartbeat_pid, wait_for

HOUR = 3_600_000
TARGET = 200_000


class Monkey(threading.Thread):
    """Kills a random worker with SIGKILL at random moments and starts it again."""

    def __init__(self, r: redis.Redis, env: dict[str, str], rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.r = r
        self.env = env
        self.rng = rng
        self.names = [f"chaos-{i}" for i in range(3)]
        self.workers = [aggregator(env, name) for name in self.names]
        self.kills = 0
        self.done = threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.done.is_set():
            # not too often: each restart is a Python start-up competing for the same two cores
            time.sleep(self.rng.uniform(0.5, 2.5))
            with self.lock:
                i = self.rng.randrange(len(self.workers))
                self.workers[i].stop(signal.SIGKILL)
                self.kills += 1
                time.sleep(self.rng.uniform(0, 0.3))
                # same name: it drains its own pending first; a new name: its entries are claimed
                name = f"chaos-{i}" if self.rng.random() < 0.5 else f"chaos-{i}-{self.kills}"
                self.names[i] = name
                self.workers[i] = aggregator(self.env, name)

    def stop(self) -> list[int]:
        """SIGTERM the survivors once they run their loop (before that, SIGTERM's default applies)."""
        self.done.set()
        self.join()
        for name, w in zip(self.names, self.workers):
            wait_for(lambda: heartbeat_pid(self.r, name) == w.proc.pid, what=f"{name} running")
        return [w.stop(signal.SIGTERM) for w in self.workers]


def test_chaos_kills_lose_and_double_count_nothing(
    r: redis.Redis, env: dict[str, str], settings: Settings, rng: random.Random
) -> None:
    env = {**env, "CLAIM_IDLE_MS": "2000", "RATE_LIMIT_PER_MINUTE": "100000000"}
    now = int(time.time() * 1000)
    seed = rng.randrange(1 << 30)
    # sessions start 45 h to 4 h ago and last at most 4 h: every event is inside the late window
    events = generate(villages=4000, sessions=26_500, start_ms=now - 45 * HOUR, end_ms=now - 4 * HOUR - 60_000, seed=seed)
    assert len(events) >= TARGET
    random.Random(seed).shuffle(events)  # starts and ends arrive in any order, in any request
    t = truth(events)

    services: list[Service] = [collector(env), kpi_api(env)]
    col, api = services
    monkey = Monkey(r, env, rng)
    monkey.start()
    try:
        with httpx.Client(base_url=col.url, headers={"X-Write-Key": WRITE_KEY}, timeout=60) as client:
            accepted = 0
            for i in range(0, len(events), 1000):
                resp = client.post("/api/analytics/events", json=batch(events[i : i + 1000]))
                assert resp.status_code == 202, resp.text
                body = resp.json()
                assert body["rejected"] == [] and body["duplicates"] == 0
                accepted += body["accepted"]
        assert accepted == len(events)
        while monkey.kills < 6:  # keep killing while the backlog drains, if sending was quick
            time.sleep(0.2)
        codes = monkey.stop()
        assert codes == [0, 0, 0]  # the survivors stop gracefully
        drainer = aggregator(env, "chaos-drain")  # claims what the killed consumers left
        wait_drained(r, settings, timeout=120)
        wait_for(lambda: heartbeat_pid(r, "chaos-drain") == drainer.proc.pid, what="drainer running")
        assert drainer.stop(signal.SIGTERM) == 0
        assert pending_of(r, settings) == 0
        assert dead_letters(r, settings) == []
        assert stat(r, settings, "applied") == len(events)
        assert monkey.kills >= 6
        print(f"chaos: {monkey.kills} kills, {len(events)} events")

        days = sorted(t.villages)
        token = tokens.issue(JWT_SECRET, role="staff")

        def series(kpi: str, **extra: str) -> dict[str, float]:
            resp = httpx.get(
                f"{api.url}/internal/analytics/kpis/{kpi}",
                params={"start": days[0], "end": days[-1], **extra},
                headers={"Authorization": f"Bearer {token}"}, timeout=30,
            )
            assert resp.status_code == 200, resp.text
            return {p["date"]: p["value"] for p in resp.json()}

        for kpi, name in (("dialogue-opens", "dialogue_open"), ("command-executions", "command_executed")):
            want = {d: c[name] for d, c in t.counts.items() if c[name]}
            got = series(kpi)
            assert {d: got[d] for d in want} == want, kpi
            assert sum(got.values()) == sum(want.values())
        dau = series("daily-active-villages")
        for d, active in t.villages.items():
            exact = len(active)
            assert abs(dau[d] - exact) <= 0.02 * exact, (d, dau[d], exact)
        avg, p50, p95 = (series("session-duration", metric=m) for m in ("avg", "p50", "p95"))
        for d, durations in t.durations.items():
            exact_avg = sum(durations) / len(durations) / 1000
            assert abs(avg[d] - exact_avg) <= 0.005 * exact_avg, (d, avg[d], exact_avg)
            for got, q in ((p50, 0.5), (p95, 0.95)):
                exact_q = exact_quantile(durations, q) / 1000
                assert abs(got[d] - exact_q) <= 0.02 * exact_q, (d, q, got[d], exact_q)
    finally:
        if not monkey.done.is_set():
            monkey.stop()
        for w in monkey.workers:
            w.stop(signal.SIGKILL)
        for svc in services:
            svc.stop()
