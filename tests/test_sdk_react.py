"""The React hook ``useAnalytics()`` (sdk/js/src/react.js) in real Chromium: a page bundled with
esbuild from React (npm) and the hook; components share one client, a click tracks, and
unmounting flushes what is queued to the running collector."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import redis

from schemas.settings import Settings
from tests import services
from tests.conftest import WRITE_KEY
from tests.sdk_helpers import (APP, App, _prerequisites, browser_context, collector,  # noqa: F401
                               wait_stored)

SDK_JS = Path(__file__).resolve().parent.parent / "sdk" / "js"


def test_use_analytics_shares_one_client_tracks_and_flushes_on_unmount(
        collector: services.Service, settings: Settings, r: redis.Redis, tmp_path: Path) -> None:
    bundle = tmp_path / "react-page.js"
    subprocess.run([str(SDK_JS / "node_modules" / ".bin" / "esbuild"), "test/react-page.js", "--bundle",
                    "--format=iife", "--define:process.env.NODE_ENV=\"production\"", "--log-level=warning",
                    f"--outfile={bundle}"], cwd=SDK_JS, check=True, timeout=120)
    cfg = {"endpoint": collector.url, "writeKey": WRITE_KEY, "appVersion": "3.0.0", "platform": "web",
           "flushAt": 25, "flushIntervalMs": 60_000, "sampleRate": 1, "sessions": False}
    body = (f'<div id="root"></div><script>window.cfg = {json.dumps(cfg)};</script>'
            f'<script src="{APP}/react-page.js"></script>')
    with browser_context() as ctx:
        app = App(ctx, collector.url, body=body, scripts={"react-page.js": bundle.read_bytes()})
        app.page.wait_for_selector("#status")
        assert app.page.text_content("#status") == "enabled"
        assert app.js("() => window.clients.length >= 2 && window.clients.every(c => c === window.clients[0])")
        app.js("() => window.clients[0].identify('village-react')")
        for _ in range(4):
            app.page.click("#open")
        assert app.js("() => window.clients[0].stats().queued") == 4 and app.posts == []
        app.js("() => window.unmount()")  # the hook's cleanup flushes (the interval is a minute away)
        app.wait_posts(1)
        assert len(app.posts[0]["body"]["events"]) == 4
        assert sum(wait_stored(r, settings, 4).values()) == 4
        assert not app.errors, app.errors
