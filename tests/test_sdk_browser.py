"""The browser SDK (``GET /sdk.js``) in real Chromium against the running collector, the page on
another origin (``http://localhost:9``, served by Playwright's router, so it also reloads offline):
batching, offline and reloads, a 503 storm, opt-out and Do Not Track, and KPIs equal to what the
page tracked while enabled."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.testclient import TestClient

from aggregator.worker import Worker
from kpi_api.app import create_app as kpi_app
from schemas.settings import Settings
from tests import services
from tests.conftest import WRITE_KEY
from tests.kpi_helpers import auth, day
from tests.sdk_helpers import (APP, SDK_BUILT, App, _prerequisites, browser_context, collector,  # noqa: F401
                               stored_events, stored_ids, wait_stored)

def test_sdk_js_is_served_cacheable_and_versioned(collector: services.Service) -> None:
    first = httpx.get(collector.url + "/sdk.js")
    assert first.status_code == 200, first.text
    assert first.headers["content-type"].startswith("text/javascript")
    assert "max-age=" in first.headers["cache-control"] and first.headers["x-sdk-version"] == "0.1.0"
    assert first.content == SDK_BUILT.read_bytes() and b"Analytics" in first.content
    again = httpx.get(collector.url + "/sdk.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.headers["etag"] == first.headers["etag"]
    assert httpx.get(collector.url + "/sdk.js", headers={"If-None-Match": '"other"'}).status_code == 200


def test_fifty_events_make_two_batches_at_once_and_ten_more_go_on_the_interval(
        collector: services.Service, settings: Settings, r: redis.Redis) -> None:
    with browser_context() as ctx:
        app = App(ctx, collector.url)
        app.init(sessions=False)
        got = app.js("""async () => {
            client.identify('village-batch');
            const ids = Array.from({length: 50}, (_, i) => client.track('dialogue_open', {dialogue_id: 'elder'}));
            await Promise.resolve();  // the flush scheduled by the 25th event runs before the interval can
            return {ids, requests: client.stats().requests};
        }""")
        assert got["requests"] == 2
        app.wait_posts(2)
        bodies = [p["body"] for p in app.posts]
        assert [len(b["events"]) for b in bodies] == [25, 25]
        assert len({b["batch_id"] for b in bodies}) == 2 and all(b["sent_at"] for b in bodies)
        assert app.sent_ids() == got["ids"]  # in order, each event once, with the id track() returned
        assert all(p["headers"].get("x-write-key") == WRITE_KEY for p in app.posts)

        more = app.track(10, "command_executed", {"command": "build", "success": True})
        assert app.js("() => client.stats().requests") == 2  # under flushAt: waits for the interval
        app.wait_posts(3, timeout_s=2 * 2.0 + 5)
        assert len(app.posts[2]["body"]["events"]) == 10
        assert app.sent_ids() == got["ids"] + more
        ids = wait_stored(r, settings, 60)
        assert ids == {i: 1 for i in got["ids"] + more}
        assert not app.errors, app.errors


def test_offline_and_a_reload_while_offline_lose_nothing(
        collector: services.Service, settings: Settings, r: redis.Redis) -> None:
    with browser_context() as ctx:
        app = App(ctx, collector.url)
        app.init(sessions=False, flushAt=5)
        app.js("() => client.identify('village-offline')")
        app.set_offline(True)
        before = app.track(12)
        app.js("() => client.flush()")
        assert app.js("() => navigator.onLine") is False
        app.load(reload=True)  # the page and the cached sdk.js load offline; the old queue is claimed
        app.init(sessions=False, flushAt=5)
        after = app.track(7)
        assert app.js("() => client.stats().queued") == 19
        assert not app.posts  # nothing left the browser while offline
        app.set_offline(False)  # the online event flushes
        ids = wait_stored(r, settings, 19)
        assert ids == {i: 1 for i in before + after}
        assert not app.errors, app.errors


def test_a_503_storm_is_ridden_out_with_backoff_honouring_retry_after(
        collector: services.Service, settings: Settings, r: redis.Redis) -> None:
    with browser_context() as ctx:
        app = App(ctx, collector.url)
        attempts: list[dict[str, Any]] = []
        storm = {"left": 4}

        def route(rt: Any) -> None:
            req = rt.request
            if req.method != "POST":
                rt.continue_()
                return
            attempts.append({"body": json.loads(req.post_data), "at": time.monotonic()})
            cors = {"Access-Control-Allow-Origin": APP, "Access-Control-Expose-Headers": "Retry-After, X-Server-Time"}
            if len(attempts) == 1:
                # stored by the real collector, but the answer is lost: the resend must count once
                real = rt.fetch()
                assert real.status == 202
                rt.fulfill(status=503, headers={**cors, "Retry-After": "1"}, body='{"error": "backpressure"}')
            elif storm["left"] > 0:
                storm["left"] -= 1
                rt.fulfill(status=503, headers={**cors, "Retry-After": "1"},
                           content_type="application/json", body='{"error": "backpressure", "detail": "storm"}')
            else:
                rt.continue_()

        ctx.route(f"{collector.url}/api/analytics/events", route)
        app.init(sessions=False, flushAt=10, retryBaseMs=50, retryMaxMs=400)
        app.js("() => client.identify('village-storm')")
        ids = app.track(10)
        deadline = time.monotonic() + 40
        while len(attempts) < 6 and time.monotonic() < deadline:
            app.page.wait_for_timeout(100)
        assert len(attempts) == 6, attempts
        stored = wait_stored(r, settings, 10)
        assert stored == {i: 1 for i in ids}
        # every attempt is the same batch with the same events, but stamped with its own sent_at
        assert {a["body"]["batch_id"] for a in attempts} == {attempts[0]["body"]["batch_id"]}
        assert all([e["event_id"] for e in a["body"]["events"]] == ids for a in attempts)
        assert len({a["body"]["sent_at"] for a in attempts}) == len(attempts)
        # never sooner than Retry-After (1 s)
        gaps = [b["at"] - a["at"] for a, b in zip(attempts, attempts[1:])]
        assert min(gaps) >= 0.95, gaps
        # the events are stored before the page has read the last 202: wait for it to count them
        deadline = time.monotonic() + 10
        while app.js("() => client.stats()")["sent"] < 10 and time.monotonic() < deadline:
            app.page.wait_for_timeout(50)
        stats = app.js("() => client.stats()")
        assert stats["retries"] == 5 and stats["sent"] == 10 and stats["queued"] == 0
        assert not app.errors, app.errors


def test_opt_out_is_remembered_across_reloads_and_sends_nothing(
        collector: services.Service, settings: Settings, r: redis.Redis) -> None:
    with browser_context() as ctx:
        app = App(ctx, collector.url)
        app.init(optOutPing=True, flushAt=5, flushIntervalMs=300)
        assert app.js("() => client.isAnalyticsEnabled()") is True
        app.js("() => client.optOut()")
        assert app.js("() => client.isAnalyticsEnabled()") is False
        assert app.track(8) == [None] * 8
        app.js("() => { client.identify('village-private'); return client.flush(); }")
        app.load(reload=True)
        app.init(optOutPing=True, flushAt=5, flushIntervalMs=300)
        assert app.js("() => client.isAnalyticsEnabled()") is False
        assert app.track(8) == [None] * 8
        app.js("() => client.flush()")
        app.page.wait_for_timeout(1500)  # several flush intervals
        # the one state-change ping: no write key, no events, and the collector stores nothing
        assert len(app.posts) == 1, app.posts
        ping = app.posts[0]
        assert ping["headers"].get("x-analytics-opt-out") == "1" and "x-write-key" not in ping["headers"]
        assert ping["body"] == {"events": []}
        assert stored_ids(r, settings) == {}
        # opting in again sends from then on
        app.js("() => client.optIn()")
        ids = app.track(5)
        assert None not in ids
        got = wait_stored(r, settings, 5)
        assert set(ids) <= set(got) and all(v == 1 for v in got.values())
        assert not app.errors, app.errors


def test_do_not_track_sends_nothing(collector: services.Service, settings: Settings, r: redis.Redis,
                                    tmp_path: Path) -> None:
    # the browser's own setting (chrome://settings: "Send a Do Not Track request")
    os.makedirs(tmp_path / "Default")
    (tmp_path / "Default" / "Preferences").write_text(json.dumps({"enable_do_not_track": True}))
    with browser_context(user_data=tmp_path) as ctx:
        app = App(ctx, collector.url)
        assert app.js("() => navigator.doNotTrack") == "1"
        app.init(flushAt=5, flushIntervalMs=300)
        assert app.js("() => client.isAnalyticsEnabled()") is False
        app.js("() => client.identify('village-dnt')")
        assert app.track(12) == [None] * 12
        app.js("() => client.flush()")
        app.page.wait_for_timeout(1500)
        assert app.posts == []
        assert stored_ids(r, settings) == {}
        assert not app.errors, app.errors


def test_kpis_equal_what_the_page_tracked_while_enabled(
        collector: services.Service, env: dict[str, str], settings: Settings, redis_url: str,
        r: redis.Redis) -> None:
    with browser_context() as ctx:
        app = App(ctx, collector.url)
        app.init(flushAt=7)
        tracked: list[dict[str, Any]] = []  # ground truth: what the page was told to track while enabled
        villages = ["village-kpi-a", "village-kpi-b", "village-kpi-c"]
        for i, v in enumerate(villages):
            app.js("v => client.identify(v)", v)
            for eid in app.track(3 + i):
                tracked.append({"id": eid, "village": v, "name": "dialogue_open"})
            for eid in app.track(2 * i + 1, "command_executed", {"command": "trade", "success": True}):
                tracked.append({"id": eid, "village": v, "name": "command_executed"})
            if i == 1:
                app.js("() => client.optOut()")
                assert app.track(9) == [None] * 9  # dropped, never counted
                app.js("() => client.optIn()")
        app.js("() => client.flush()")
        # hiding the page ends the session (with its duration) and flushes with keepalive
        app.page.evaluate("""() => {
            Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
            document.dispatchEvent(new Event('visibilitychange'));
        }""")
        deadline = time.monotonic() + 30
        while app.js("() => client.stats().queued") and time.monotonic() < deadline:
            app.page.wait_for_timeout(100)
        assert app.js("() => client.stats().queued") == 0
        assert not app.errors, app.errors

    events = stored_events(r, settings)
    wire = {e["event_id"]: e for p in app.posts if p["body"] for e in p["body"]["events"]}
    sessions = [e for e in wire.values() if e["event_name"].startswith("session_")]
    assert {e["event_name"] for e in sessions} == {"session_start", "session_end"}
    Worker(redis.Redis.from_url(redis_url), settings, consumer="sdk-test").run(burst=True)

    today = day(int(time.time() * 1000))
    with TestClient(kpi_app(settings)) as k:
        def value(path: str) -> float:
            sep = "&" if "?" in path else "?"
            resp = k.get(f"/internal/analytics/kpis/{path}{sep}start={today}&end={today}", headers=auth())
            assert resp.status_code == 200, resp.text
            return resp.json()[0]["value"]

        assert value("dialogue-opens") == sum(t["name"] == "dialogue_open" for t in tracked)
        assert value("command-executions") == sum(t["name"] == "command_executed" for t in tracked)
        active = {t["village"] for t in tracked}
        assert value("daily-active-villages") == len(active) == 3
        # sessions: the starts and ends the page sent pair up, the KPI averages their spans
        start = {e["session_id"]: e for e in sessions if e["event_name"] == "session_start"}
        ends = [e for e in sessions if e["event_name"] == "session_end" and e["session_id"] in start]
        assert ends
        spans = [(_ms(e["ts_utc"]) - _ms(start[e["session_id"]]["ts_utc"])) / 1000 for e in ends]
        assert abs(value("session-duration?metric=avg") - sum(spans) / len(spans)) <= 0.01 * max(spans) + 0.01
    assert len(events) == len(wire)  # every event sent is stored once
    assert {t["id"] for t in tracked} <= set(wire)


def _ms(iso: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def test_clock_skew_is_corrected_from_x_server_time(
        collector: services.Service, settings: Settings, r: redis.Redis) -> None:
    skew = 3 * 3_600_000  # the device's clock runs three hours ahead
    with browser_context() as ctx:
        ctx.add_init_script(f"(() => {{ const real = Date.now; Date.now = () => real() + {skew}; }})()")
        app = App(ctx, collector.url)
        app.init(sessions=False, flushAt=5)
        app.js("() => client.identify('village-skew')")
        first = app.track(5)  # sent before the SDK has seen the server's clock
        wait_stored(r, settings, 5)
        second = app.track(5)  # sent with the offset learned from X-Server-Time (CORS-exposed)
        wait_stored(r, settings, 10)
        offset = app.js("() => client.offset")
        assert abs(offset + skew) < 60_000, offset
        assert not app.errors, app.errors
    real_now = time.time() * 1000
    by_id = {str(uuid.UUID(str(ev.event_id))): ev for ev in stored_events(r, settings)}
    # every stored time is true time: the first batch corrected by the collector (sent_at vs its
    # clock), the second by the SDK itself, so the collector had nothing left to correct
    for eid in first + second:
        assert abs(by_id[eid].ts - real_now) < 60_000
    for eid in first:
        assert abs(by_id[eid].ts_original - real_now - skew) < 60_000
    for eid in second:
        assert abs(by_id[eid].ts_original - real_now) < 60_000
        assert by_id[eid].ts == by_id[eid].ts_original
