"""The dashboard's polish in Chromium (issue 17): every line of daily/WAU/MAU visible when they
coincide, a heatmap scale that shows a quiet hour beside a busy one, no stale charts under an error
banner, a paged top table, a trend panel that does not repeat a chart above, and the profile's own
noun for its actors.

Each check reads what Chromium drew or shows (canvas pixels, the drawn cells' colours, the DOM),
against data whose shape is known exactly.
"""

from __future__ import annotations

import json

import random
import re
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis

from aggregator.worker import Worker
from schemas.days import day_start_ms
from schemas.settings import Settings
from tests.kpi_helpers import HOUR, profile_traffic
from tests.streamfeed import append, stored
from tests.test_dashboard import chart_data, dashboard_page, wait_state

TABLE = "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
# Pixels of each dataset's colour (COLORS[0..2] in dashboard.js: blue, green, red) inside the plot area
# of the active chart (a few pixels over its edge: a line at the top is drawn half outside).
LINE_PIXELS = """() => {
  const c = window.dashboard.charts['chart-active'], a = c.chartArea, k = c.currentDevicePixelRatio || 1;
  const x = Math.max(0, a.left * k), y = Math.max(0, (a.top - 6) * k);
  const img = c.ctx.getImageData(x, y, (a.right - a.left) * k, (a.bottom - a.top + 12) * k).data;
  const n = { blue: 0, green: 0, red: 0 };
  for (let i = 0; i < img.length; i += 4) {
    const [r, g, b, alpha] = [img[i], img[i + 1], img[i + 2], img[i + 3]];
    if (alpha < 40) continue;
    if (b > r + 60 && b > g + 40) n.blue++;
    else if (g > r + 40 && g > b + 20) n.green++;
    else if (r > g + 60 && r > b + 60) n.red++;
  }
  return n;
}"""
# Each drawn heatmap cell: its weekday, hour, value and fill colour as Chart.js resolved it.
HEAT_CELLS = """() => {
  const c = window.dashboard.charts['chart-heatmap'];
  return c.getDatasetMeta(0).data.map((el, i) => ({ ...c.data.datasets[0].data[i], color: el.options.backgroundColor }));
}"""
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def _alpha(color: str) -> float:
    m = re.fullmatch(r"rgba\((\d+), ?(\d+), ?(\d+), ?([\d.]+)\)", color)
    assert m, color
    return float(m.group(4))


def _apply(page: Any, start: str, end: str) -> None:
    page.fill("#start", start)
    page.fill("#end", end)
    page.click("#apply")


def test_seed003_coinciding_lines_log_heatmap_and_no_stale_charts_on_error(
        env: dict[str, str], settings: Settings, r: redis.Redis, rng: random.Random) -> None:
    today = datetime.now(timezone.utc).date()
    days = [today - timedelta(days=i) for i in range(5, 0, -1)]
    pool = [f"village-{i}" for i in range(30)]
    events = []
    for d in days:  # the same 30 villages every day, nothing before: daily = WAU = MAU = 30
        events += [stored("village_active", v, day_start_ms(d) + 10 * HOUR + rng.randrange(HOUR)) for v in pool]
    busy, quiet = day_start_ms(days[0]) + 14 * HOUR, day_start_ms(days[0]) + 3 * HOUR
    events += [stored("village_active", pool[i % 30], busy + i * 1000) for i in range(600)]
    events.append(stored("village_active", pool[0], quiet + 5000))
    append(r, settings, events)
    Worker(r, settings, consumer="panels").run(burst=True)
    first, last = days[0].isoformat(), days[-1].isoformat()

    with dashboard_page(env) as (page, errors, _url):
        wait_state(page, "ready|empty|error")
        _apply(page, first, last)
        page.wait_for_function(f"() => window.dashboard.charts['chart-active'].data.labels.join() === {','.join(d.isoformat() for d in days)!r}")
        assert wait_state(page, "ready|empty|error").startswith("ready")
        active = chart_data(page)["chart-active"]
        assert active == [[30] * 5] * 3, active  # the three lines coincide exactly
        styles = page.evaluate("""() => window.dashboard.charts['chart-active'].data.datasets.map(d =>
            [d.borderWidth, JSON.stringify(d.borderDash || []), d.pointStyle])""")
        assert len({tuple(s) for s in styles}) == 3, styles
        pixels = page.evaluate(LINE_PIXELS)
        # every line's colour is on screen although the lines lie on one another
        assert min(pixels.values()) >= 100, pixels
        assert page.inner_text("#active figcaption").startswith("Active villages")

        # the heatmap: a 1-event hour beside a 600-event one still shows; an empty hour does not
        cells = {(c["y"], int(c["x"])): c for c in page.evaluate(HEAT_CELLS)}
        wd = DAYS[days[0].weekday()]
        other = DAYS[days[1].weekday()]
        assert (cells[(wd, 14)]["v"], cells[(wd, 3)]["v"], cells[(wd, 10)]["v"], cells[(other, 3)]["v"]) == (600, 1, 30, 0)
        a_busy, a_mid, a_quiet, a_zero = (_alpha(cells[key]["color"]) for key in ((wd, 14), (wd, 10), (wd, 3), (other, 3)))
        assert a_busy > a_mid > a_quiet > a_zero, (a_busy, a_mid, a_quiet, a_zero)
        assert a_quiet >= 0.15 and a_quiet - a_zero >= 0.1, (a_quiet, a_zero)  # linear: 0.05 + 0.95/600
        assert a_mid >= 0.5, a_mid  # 30 of 600: a third of the way on a log scale, 5 % on a linear one
        legend = page.inner_text("#heatmap-legend")
        assert "Log scale" in legend and "600" in legend and "suppressed" in legend, legend

        cards_before = page.eval_on_selector_all("#totals .card", "cs => cs.length")
        top_before = page.eval_on_selector_all("#top-table tbody tr", "rs => rs.length")
        assert cards_before and top_before == 0  # no dialogue opened: an empty top table, stated
        assert page.is_visible("#top .not-configured")

        # an error: the banner, and none of the charts, cards or tables under it keep old numbers
        _apply(page, last, first)
        status = wait_state(page, "error")
        assert "400" in status, status
        stale = chart_data(page)
        assert stale and all(datasets == [] for datasets in stale.values()), stale
        assert page.eval_on_selector_all("#totals .card", "cs => cs.length") == 0
        assert page.eval_on_selector_all("main table tbody tr", "rs => rs.length") == 0
        assert page.inner_text("#heatmap-legend") == ""
        # the next good load brings them back
        _apply(page, first, last)
        assert wait_state(page, "ready|empty").startswith("ready")
        page.wait_for_function("() => window.dashboard.charts['chart-active'].data.datasets.length === 3")
        assert chart_data(page)["chart-active"] == [[30] * 5] * 3
        assert page.eval_on_selector_all("#totals .card", "cs => cs.length") == cards_before
        assert page.eval_on_selector_all("#cohort-table tbody tr", "rs => rs.length") == 5
        assert "Log scale" in page.inner_text("#heatmap-legend")
        assert not errors, errors


REPEATS = {"daily-active-villages", "weekly-active-villages", "monthly-active-villages", "session-duration",
           "events", "events-by-type", "dialogue-opens", "command-executions"}


@pytest.mark.parametrize("profile,noun,actor_uniques", [("seed000", "users", "active-users"), ("seed004", "users", "dau")])
def test_the_profiles_own_actor_noun_and_a_trend_that_repeats_no_chart(
        profile: str, noun: str, actor_uniques: str, env: dict[str, str], redis_url: str, r: redis.Redis,
        rng: random.Random) -> None:
    env = {**env, "ANALYTICS_PROFILE": profile}
    profile_traffic(profile, redis_url, env, rng.randrange(1 << 30))
    with dashboard_page(env) as (page, errors, _url):
        assert wait_state(page, "ready|empty|error").startswith("ready")
        page.wait_for_function("() => document.querySelectorAll('#totals .card').length > 0")
        text = page.inner_text("main")
        assert "village" not in text.lower(), [line for line in text.splitlines() if "village" in line.lower()]
        assert page.inner_text("#active figcaption").startswith(f"Active {noun}")
        assert f"Distinct active {noun}" in page.inner_text("#totals")
        assert f"fewer than k {noun}" in page.inner_text("#heatmap-legend")
        # the trend panel: the profile's other daily KPIs, never one a panel above already charts
        options = page.eval_on_selector_all("#trend-kpi option", "os => os.map(o => o.value)")
        assert options and not set(options) & (REPEATS | {actor_uniques}), options
        assert page.input_value("#trend-kpi") == ("installs" if profile == "seed000" else options[0])
        # the panels of seed 003's events it does not have are not shown empty
        assert not page.is_visible("#dialogue") and not page.is_visible("#command")
        if profile == "seed004":
            cards = page.eval_on_selector_all("#totals .card", "cs => cs.map(c => c.dataset.kpi)")
            assert {"total-users", "new-users"} <= set(cards), cards
            assert not page.is_visible("#top .pager")  # five features: one page
        assert not errors, errors


def test_seed000_top_table_pages_through_the_servers(
        env: dict[str, str], redis_url: str, r: redis.Redis, rng: random.Random) -> None:
    env = {**env, "ANALYTICS_PROFILE": "seed000"}
    events = profile_traffic("seed000", redis_url, env, rng.randrange(1 << 30))
    by_server = Counter(e["payload"]["server_id"] for e in events if e["event_name"] == "server_installed")
    ordered = [[k, f"{v:,}"] for k, v in sorted(by_server.items(), key=lambda kv: (-kv[1], kv[0]))]
    assert len(ordered) > 10, len(ordered)  # more than one page of 10
    with dashboard_page(env) as (page, errors, _url):
        assert wait_state(page, "ready|empty|error").startswith("ready")
        assert page.eval_on_selector_all("#top-table tbody tr", TABLE) == ordered[:10]
        assert page.is_visible("#top .pager") and page.is_disabled("#top-prev") and page.is_enabled("#top-next")
        assert page.inner_text("#top-page") == f"rows 1–10 of {len(ordered)}"
        page.click("#top-next")
        page.wait_for_function("() => document.getElementById('top-page').textContent.startsWith('rows 11')")
        assert page.eval_on_selector_all("#top-table tbody tr", TABLE) == ordered[10:20]
        assert page.is_enabled("#top-prev") and page.is_disabled("#top-next") == (len(ordered) <= 20)
        # a poll keeps the page; a new range starts again at the first
        page.evaluate("() => window.dashboard.load()")
        wait_state(page, "ready")
        assert page.eval_on_selector_all("#top-table tbody tr", TABLE) == ordered[10:20]
        page.click("#top-prev")
        page.wait_for_function("() => document.getElementById('top-page').textContent.startsWith('rows 1–')")
        assert page.eval_on_selector_all("#top-table tbody tr", TABLE) == ordered[:10]
        page.click("#top-next")
        page.wait_for_function("() => document.getElementById('top-page').textContent.startsWith('rows 11')")
        start = (datetime.now(timezone.utc).date() - timedelta(days=20)).isoformat()
        page.fill("#start", start)
        page.click("#apply")
        page.wait_for_function("() => document.getElementById('top-page').textContent.startsWith('rows 1–')")
        assert page.eval_on_selector_all("#top-table tbody tr", TABLE) == ordered[:10]
        # install-count keeps an all-time table: a one-day range shows that day, "all time" every install
        first_day = min(e["ts_utc"][:10] for e in events)
        that_day = Counter(e["payload"]["server_id"] for e in events
                           if e["event_name"] == "server_installed" and e["ts_utc"][:10] == first_day)
        day_rows = [[k, f"{v:,}"] for k, v in sorted(that_day.items(), key=lambda kv: (-kv[1], kv[0]))][:10]
        assert day_rows != ordered[:10]
        page.fill("#start", first_day)
        page.fill("#end", first_day)
        page.click("#apply")
        wait_state(page, "ready")
        assert page.eval_on_selector_all("#top-table tbody tr", TABLE) == day_rows
        assert page.is_visible("#top-all-time")
        page.check("#top-all-time")
        page.wait_for_function(  # the same rows as every install counted, once loaded
            "want => JSON.stringify([...document.querySelectorAll('#top-table tbody tr')].map("
            "r => [...r.children].map(c => c.textContent))) === want", arg=json.dumps(ordered[:10], separators=(",", ":")),
            timeout=10_000)
        assert page.eval_on_selector_all("#top-table tbody tr", TABLE) == ordered[:10]
        assert not errors, errors
