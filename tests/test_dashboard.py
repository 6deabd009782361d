"""The dashboard in headless Chromium (Debian's ``chromium`` driven by Playwright): loads with data,
follows the date range, shows the empty and error states, and renders a non-blank screenshot."""

from __future__ import annotations

import contextlib
import random
import shutil
import struct
import time
import zlib
from collections import Counter
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis

from infra import tokens
from schemas.settings import Settings
from scripts.simulate import generate
from tests import services
from tests.conftest import JWT_SECRET
from tests.kpi_helpers import profile_traffic, HOUR, day, load, ms, truth

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]



@pytest.fixture(autouse=True)
def _chromium_installed() -> None:
    # a missing browser fails the test, never skips it: .ci/run installs Debian's chromium
    assert Path(CHROMIUM).exists(), "Debian's chromium is not installed: apt-get install -y chromium"


def png_pixels(data: bytes) -> tuple[int, int, int, bytes]:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium writes): width, height, channels, raw rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6), (depth, color)
            channels = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels
    out = bytearray()
    prev = bytearray(stride)
    for y in range(height):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = prev[i]
            c = prev[i - channels] if i >= channels else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += line
        prev = line
    return width, height, channels, bytes(out)


def chart_data(page: Any) -> dict[str, Any]:
    return page.evaluate("""() => Object.fromEntries(Object.entries(window.dashboard.charts).map(
        ([id, c]) => [id, c.data.datasets.map(d => d.data)]))""")


def wait_state(page: Any, states: str) -> str:
    page.wait_for_function(f"() => {states!r}.split('|').includes(document.getElementById('status').dataset.state)",
                           timeout=30_000)
    return page.eval_on_selector("#status", "e => e.dataset.state + ': ' + e.textContent")


@contextlib.contextmanager
def dashboard_page(env: dict[str, str]) -> Iterator[tuple[Any, list[str], str]]:
    """A KPI API process and the dashboard open in headless Chromium with a staff token:
    (page, the page's script errors, the API's URL)."""
    from playwright.sync_api import sync_playwright

    api = services.kpi_api(env)
    try:
        token = tokens.issue(JWT_SECRET, "staff", "browser-test")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1300})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(f"{api.url}/dashboard#token={token}")
                yield page, errors, api.url
            finally:
                browser.close()
    finally:
        api.stop()


def test_dashboard_in_chromium(env: dict[str, str], settings: Settings, redis_url: str, r: redis.Redis,
                               rng: random.Random, tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    events = generate(villages=80, sessions=300, start_ms=now - 40 * HOUR, end_ms=now - 5 * HOUR,
                      seed=rng.randrange(1 << 30))
    load(settings, redis_url, events)
    t = truth(events)
    first_day = min(t.villages)
    with dashboard_page(env) as (page, errors, url):
        page_resp = httpx.get(url + "/dashboard")
        assert page_resp.status_code == 200 and "chart.umd.min.js" in page_resp.text
        assert httpx.get(url + "/dashboard/assets/chart.umd.min.js").status_code == 200, "run npm ci"
        status = wait_state(page, "ready|empty|error")
        assert status.startswith("ready"), status
        assert "#token" not in page.url  # the fragment is stored, then dropped from the URL
        wide = chart_data(page)
        assert set(wide) >= {"chart-active", "chart-session", "chart-dialogue", "chart-command",
                             "chart-types", "chart-heatmap"}
        dia_days = page.evaluate("() => window.dashboard.charts['chart-dialogue'].data.labels")
        shown = dict(zip(dia_days, wide["chart-dialogue"][0]))
        for d, counts in t.counts.items():
            assert shown[d] == counts["dialogue_open"], (d, shown)
        cards = page.eval_on_selector_all("#totals .card", "cs => cs.map(c => c.dataset.kpi)")
        assert "dialogue-opens" in cards
        # the profile's declared KPIs: a daily trend (seed 003: commands, broken down by command, since
        # their totals are the command executions chart above) and a top-N table
        assert page.input_value("#trend-kpi") == "commands-by-name"
        assert page.inner_text("#trend-title") == "Trend by command"
        trend_days = page.evaluate("() => window.dashboard.charts['chart-trend'].data.labels")
        groups = page.evaluate("() => window.dashboard.charts['chart-trend'].data.datasets.map(d => d.label)")
        by_command = Counter((day(ms(e["ts_utc"])), e["payload"]["command"])
                             for e in events if e["event_name"] == "command_executed")
        assert groups == sorted({c for _, c in by_command}), groups
        # a breakdown cell of a day with fewer than k villages is suppressed (null): a short last day
        shown_days = [d for i, d in enumerate(trend_days) if all(v[i] is not None for v in wide["chart-trend"])]
        assert set(shown_days) & set(t.counts), shown_days
        for g, values in zip(groups, wide["chart-trend"]):
            cells = {d: v for d, v in zip(trend_days, values) if d in shown_days}
            assert cells == {d: by_command[(d, g)] for d in shown_days}, g
        for d in set(shown_days) & set(t.counts):
            assert sum(v[trend_days.index(d)] for v in wide["chart-trend"]) == t.counts[d]["command_executed"], d
        assert page.input_value("#top-kpi") == "dialogues-by-id"
        opened = Counter(e["payload"]["dialogue_id"] for e in events if e["event_name"] == "dialogue_open")
        top10 = sorted(opened.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        table = page.eval_on_selector_all(
            "#top-table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
        assert table == [[k, f"{v:,}"] for k, v in top10], table

        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        width, height, ch, px = png_pixels(shot.read_bytes())
        sample = px[:: ch * 97]
        mean = sum(sample) / len(sample)
        variance = sum((v - mean) ** 2 for v in sample) / len(sample)
        assert width >= 1000 and variance > 100, variance
        distinct = {px[i : i + 3] for i in range(0, len(px), ch * 31)}
        assert len(distinct) > 50, len(distinct)

        # one day only: the charts follow the range
        page.fill("#start", first_day)
        page.fill("#end", first_day)
        page.click("#apply")
        wait_state(page, "ready|empty|error")
        page.wait_for_function(
            f"() => window.dashboard.charts['chart-dialogue'].data.labels.join() === {first_day!r}")
        narrow = chart_data(page)
        assert narrow != wide
        assert narrow["chart-dialogue"] == [[t.counts[first_day]["dialogue_open"]]]

        # a range with no events: the empty state
        page.fill("#start", "2020-01-01")
        page.fill("#end", "2020-01-07")
        page.click("#apply")
        assert wait_state(page, "empty|error").startswith("empty")

        # end before start: the API's 400 shows as the error state
        page.fill("#start", "2020-01-07")
        page.fill("#end", "2020-01-01")
        page.click("#apply")
        status = wait_state(page, "error")
        assert "400" in status and "before" in status, status

        # a wrong token: the error state asks for a staff token
        page.evaluate("() => localStorage.setItem('villageAnalyticsToken', 'garbage')")
        page.reload()
        status = wait_state(page, "error")
        assert "401" in status and "token" in status, status
        page.screenshot(path=str(tmp_path / "dashboard-error.png"))
        assert not errors, errors


def test_dashboard_follows_the_profile_seed000_install_trends_and_top_servers(
        env: dict[str, str], redis_url: str, r: redis.Redis, rng: random.Random) -> None:
    env = {**env, "ANALYTICS_PROFILE": "seed000"}
    events = profile_traffic("seed000", redis_url, env, rng.randrange(1 << 30))
    installs = [e for e in events if e["event_name"] == "server_installed"]
    with dashboard_page(env) as (page, errors, url):
        status = wait_state(page, "ready|empty|error")
        assert status.startswith("ready"), status  # seed-003 charts absent, not an error
        assert page.inner_text("#trend-title") == "Install trends"
        assert page.input_value("#trend-kpi") == "installs"
        labels = page.evaluate("() => window.dashboard.charts['chart-trend'].data.labels")
        shown = dict(zip(labels, chart_data(page)["chart-trend"][0]))
        per_day = Counter(day(ms(e["ts_utc"])) for e in installs)
        assert {d: v for d, v in shown.items() if v} == dict(per_day)
        table = page.eval_on_selector_all(
            "#top-table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
        by_server = Counter(e["payload"]["server_id"] for e in installs)
        top10 = sorted(by_server.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        assert table == [[k, f"{v:,}"] for k, v in top10], table
        cards = page.eval_on_selector_all("#totals .card", "cs => cs.map(c => c.dataset.kpi)")
        assert "dialogue-opens" not in cards and "events" in cards
        assert not errors, errors


def test_dashboard_cohort_table_of_village_retention(
        env: dict[str, str], settings: Settings, r: redis.Redis, rng: random.Random) -> None:
    from datetime import date, datetime, timedelta, timezone

    from aggregator.worker import Worker
    from kinds import retention
    from schemas.days import DAY_MS, day_start_ms
    from tests.streamfeed import append, stored

    today = datetime.now(timezone.utc).date()
    d0 = today - timedelta(days=8)
    pool = [f"village-{i}" for i in range(60)]
    days: dict[date, set[str]] = {d0: set(pool[:40])}
    days[d0 + timedelta(days=1)] = {v for v in pool[:40] if rng.random() < 0.5} | set(pool[40:50])
    days[d0 + timedelta(days=7)] = {v for v in pool[:40] if rng.random() < 0.3} | set(pool[50:])
    for d, actors in days.items():
        append(r, settings, [stored("village_active", a, day_start_ms(d) + rng.randrange(DAY_MS)) for a in actors])
    Worker(r, settings, consumer="cohort").run(burst=True)
    with dashboard_page(env) as (page, errors, _):
        status = wait_state(page, "ready|empty|error")
        assert status.startswith("ready"), status
        assert page.input_value("#retention-kpi") == "village-retention"
        page.wait_for_function("() => document.querySelectorAll('#cohort-table tbody tr').length > 0")
        head = page.eval_on_selector_all("#cohort-table thead th", "ths => ths.map(t => t.textContent)")
        assert head == ["cohort day", "D+1", "D+7", "D+30"]
        rows = {r_[0]: r_[1:] for r_ in page.eval_on_selector_all(
            "#cohort-table tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))")}
        assert rows[today.isoformat()] == ["—", "—", "—"]  # D+N still to come
        for n, cell in zip((1, 7), rows[d0.isoformat()][:2]):
            a, b = days[d0], days[d0 + timedelta(days=n)]
            exact = len(a & b) / len(a)
            bound = retention.error_bound(len(a), len(b), len(a | b))
            assert cell.endswith("%") and abs(float(cell[:-1]) / 100 - exact) <= bound + 1e-3, (n, cell, exact)
        assert rows[d0.isoformat()][2] == "—"
        # a day with no actors has no cohort: no share either
        assert rows[(d0 + timedelta(days=2)).isoformat()] == ["—", "—", "—"]
        assert not errors, errors
