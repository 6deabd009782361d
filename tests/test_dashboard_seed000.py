"""Seed 000's dashboard panels in Chromium: search usage and the server x day install heatmap.

Events go through the real collector and a burst worker; the panels must show what an independent
count of the sent events says, follow the date range and the platform filter, and never show a
query's text (queries are stored hashed).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from datetime import date, timedelta

import redis

from scripts.seed_traffic import QUERIES
from tests.kpi_helpers import profile_traffic, day, ms
from tests.test_dashboard import dashboard_page, wait_state

TABLE = "rows => rows.map(r => [...r.cells].map(c => c.textContent))"


def _num(text: str) -> int:
    return int(text.replace(",", ""))


def test_seed000_search_usage_and_server_heatmap(
        env: dict[str, str], redis_url: str, r: redis.Redis, rng: random.Random) -> None:
    env = {**env, "ANALYTICS_PROFILE": "seed000"}
    events = profile_traffic("seed000", redis_url, env, rng.randrange(1 << 30), count=1200)
    searches = [e for e in events if e["event_name"] == "search_performed"]
    per_day: Counter[str] = Counter(day(ms(e["ts_utc"])) for e in searches)
    per_day_platform: Counter[tuple[str, str]] = Counter((day(ms(e["ts_utc"])), e["platform"]) for e in searches)
    zero: Counter[str] = Counter(day(ms(e["ts_utc"])) for e in searches if e["payload"]["results"] == 0)
    unique: dict[str, set[str]] = defaultdict(set)
    for e in searches:
        unique[day(ms(e["ts_utc"]))].add(e["payload"]["query"])
    installs = [e for e in events if e["event_name"] == "server_installed"]
    by_server = Counter(e["payload"]["server_id"] for e in installs)
    top10 = [k for k, _ in sorted(by_server.items(), key=lambda kv: (-kv[1], kv[0]))[:10]]
    cells = Counter((e["payload"]["server_id"], day(ms(e["ts_utc"]))) for e in installs)
    assert zero and per_day and installs  # the generated traffic exercises every column

    with dashboard_page(env) as (page, errors, _url):
        status = wait_state(page, "ready|empty|error")
        assert status.startswith("ready"), status
        page.wait_for_function("() => document.querySelectorAll('#search-table tbody tr').length > 0")
        assert page.is_visible("#search") and page.is_visible("#server-heatmap")
        shown = {row[0]: row[1:] for row in page.eval_on_selector_all("#search-table tbody tr", TABLE)}
        for d in per_day:
            s, u, z = shown[d]
            assert _num(s) == per_day[d], (d, shown[d])
            assert _num(z) == zero[d], (d, shown[d], zero[d])
            assert abs(_num(u) - len(unique[d])) <= 1, (d, shown[d], len(unique[d]))  # HLL of a few dozen
        assert {d for d, row in shown.items() if _num(row[0])} == set(per_day)
        platforms = dict(page.eval_on_selector_all("#search-platforms tbody tr", TABLE))
        by_platform = Counter(e["platform"] for e in searches)
        assert {p: _num(v) for p, v in platforms.items()} == dict(by_platform)
        text = page.inner_text("body")
        assert not [q for q in QUERIES if q in text]  # counts only, never a query's text

        head = page.eval_on_selector_all("#server-table thead th", "ths => ths.map(t => t.textContent)")
        grid = page.eval_on_selector_all("#server-table tbody tr", TABLE)
        days = page.eval_on_selector_all("#server-table tbody tr:first-child td[data-date]",
                                         "tds => tds.map(t => t.dataset.date)")
        assert head[0] == "server" and len(head) == len(days) + 1
        assert [row[0] for row in grid] == top10
        for row in grid:
            assert [int(v) for v in row[1:]] == [cells[(row[0], d)] for d in days], row

        # the platform filter: searches of that platform only
        platform = sorted(by_platform)[0]
        page.select_option("#search-platform", platform)
        page.wait_for_function(f"() => document.querySelector('#search .note').textContent.includes({platform!r})")
        wait_state(page, "ready")
        shown = {row[0]: row[1:] for row in page.eval_on_selector_all("#search-table tbody tr", TABLE)}
        for d in per_day:
            assert _num(shown[d][0]) == per_day_platform[(d, platform)], (d, platform, shown[d])
        assert [row[0] for row in page.eval_on_selector_all("#search-platforms tbody tr", TABLE)] == [platform]

        # one day only: both panels follow the range
        first = min(per_day)
        page.select_option("#search-platform", "")
        page.fill("#start", first)
        page.fill("#end", first)
        page.click("#apply")
        page.wait_for_function(
            f"() => [...document.querySelectorAll('#search-table tbody tr')].map(r => r.cells[0].textContent).join() === {first!r}"
            " && document.querySelector('#search-platform').value === ''")
        wait_state(page, "ready")
        row = page.eval_on_selector_all("#search-table tbody tr", TABLE)[0]
        assert _num(row[1]) == per_day[first] and _num(row[3]) == zero[first], row
        days = page.eval_on_selector_all("#server-table tbody tr:first-child td[data-date]",
                                         "tds => tds.map(t => t.dataset.date)")
        assert days == [first]
        first_top = sorted({s for s, d in cells if d == first}, key=lambda s: (-cells[(s, first)], s))[:10]
        grid = page.eval_on_selector_all("#server-table tbody tr", TABLE)
        assert [(g[0], int(g[1])) for g in grid] == [(s, cells[(s, first)]) for s in first_top]

        # a range over 31 days: the heatmap shows the last 31, one request per day
        start = (date.fromisoformat(first) - timedelta(days=40)).isoformat()
        page.fill("#start", start)
        page.click("#apply")
        page.wait_for_function("() => document.querySelector('#server-heatmap figcaption').textContent.includes('last 31')")
        wait_state(page, "ready")
        days = page.eval_on_selector_all("#server-table tbody tr:first-child td[data-date]",
                                         "tds => tds.map(t => t.dataset.date)")
        assert len(days) == 31 and days[-1] == first, days
        assert not errors, errors
