"""Helpers for the SDK tests: what the collector stored (read straight from the shard streams), and\na page on another origin in real Chromium that loads the browser SDK from the collector."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from schemas import keyspace
from schemas.catalog import STORED_LIST_DECODER, StoredEvent
from schemas.settings import Settings
from tests import services
from tests.conftest import WRITE_KEY


def stored_events(r: redis.Redis, settings: Settings) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    for s in range(settings.stream_shards):
        for _id, fields in r.xrange(keyspace.stream(s)):
            out += STORED_LIST_DECODER.decode(fields[keyspace.ENTRY_EVENTS_B])
    return out


def stored_ids(r: redis.Redis, settings: Settings) -> Counter[str]:
    """How many times each event_id (as the client wrote it, a dashed UUID) is in the streams."""
    return Counter(str(uuid.UUID(str(ev.event_id))) for ev in stored_events(r, settings))


def wait_stored(r: redis.Redis, settings: Settings, count: int, timeout: float = 60.0) -> Counter[str]:
    """Wait until at least ``count`` events are stored; returns the id counts."""
    deadline = time.monotonic() + timeout
    while True:
        ids = stored_ids(r, settings)
        if sum(ids.values()) >= count or time.monotonic() > deadline:
            return ids
        time.sleep(0.1)


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
APP = "http://localhost:9"  # another origin than the collector (127.0.0.1:port); routed, no server
SDK_BUILT = Path(__file__).resolve().parent.parent / "sdk" / "js" / "dist" / "sdk.js"


@pytest.fixture(autouse=True)
def _prerequisites() -> None:
    # a missing browser or build fails the test, never skips it
    assert Path(CHROMIUM).exists(), "Debian's chromium is not installed: apt-get install -y chromium"
    assert SDK_BUILT.is_file(), "the browser SDK is not built: scripts/test.sh builds it (sdk/js: npm run build)"


@pytest.fixture
def collector(env: dict[str, str], r: redis.Redis) -> Iterator[services.Service]:
    svc = services.collector({**env, "ANALYTICS_ALLOWED_ORIGINS": APP})
    try:
        yield svc
    finally:
        svc.stop()


@contextlib.contextmanager
def browser_context(user_data: Path | None = None) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        if user_data is not None:
            ctx = p.chromium.launch_persistent_context(str(user_data), executable_path=CHROMIUM, args=ARGS,
                                                       headless=True)
            try:
                yield _grant(ctx)
            finally:
                ctx.close()
            return
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield _grant(browser.new_context())
        finally:
            browser.close()


def _grant(ctx: Any) -> Any:
    # the page (routed, so Chromium files it as public) calls a collector on loopback: Chromium's
    # Local Network Access asks the user for that; a production collector is not on loopback
    ctx.grant_permissions(["local-network-access"])
    return ctx


class App:
    """The page on http://app.test that loads the SDK from the collector, and every POST it made."""

    def __init__(self, ctx: Any, collector_url: str, body: str = "app",
                 scripts: dict[str, bytes] | None = None) -> None:
        self.ctx = ctx
        self.collector = collector_url
        self.posts: list[dict[str, Any]] = []
        self.errors: list[str] = []
        html = f'<!doctype html><html><head><script src="{collector_url}/sdk.js"></script></head><body>{body}</body></html>'
        own = {f"{APP}/{name}": data for name, data in (scripts or {}).items()}

        def serve(route: Any) -> None:
            if route.request.url in own:
                route.fulfill(status=200, content_type="text/javascript", body=own[route.request.url])
            else:
                route.fulfill(status=200, content_type="text/html", body=html)

        ctx.route(f"{APP}/**", serve)
        # routing turns Chromium's HTTP cache off, so the router is the cache that lets sdk.js load offline
        self.offline = False
        self.sdk_copy: bytes | None = None
        ctx.route(f"{collector_url}/sdk.js", self._sdk)
        ctx.on("request", self._seen)
        self.page = ctx.pages[0] if ctx.pages else ctx.new_page()
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.load()

    def _sdk(self, route: Any) -> None:
        if self.offline:
            assert self.sdk_copy is not None
            route.fulfill(status=200, content_type="text/javascript", body=self.sdk_copy)
            return
        resp = route.fetch()
        self.sdk_copy = resp.body()
        route.fulfill(response=resp)

    def set_offline(self, offline: bool) -> None:
        self.offline = offline
        self.ctx.set_offline(offline)

    def _seen(self, request: Any) -> None:
        if request.method == "POST" and request.url.startswith(self.collector):
            self.posts.append({"headers": request.headers, "body": json.loads(request.post_data or "null"),
                               "at": time.monotonic()})

    def load(self, reload: bool = False) -> None:
        if reload:
            self.page.reload()
        else:
            self.page.goto(f"{APP}/")
        self.page.wait_for_function("() => typeof Analytics === 'object' && typeof Analytics.init === 'function'")

    def init(self, **options: Any) -> None:
        cfg = {"endpoint": self.collector, "writeKey": WRITE_KEY, "appVersion": "2.0.1", "platform": "web",
               "flushAt": 25, "flushIntervalMs": 2000, "sampleRate": 1, **options}
        self.page.evaluate("cfg => { window.client = Analytics.init(cfg); }", cfg)

    def js(self, script: str, arg: Any = None) -> Any:
        return self.page.evaluate(script, arg)

    def track(self, n: int, name: str = "dialogue_open", payload: dict[str, Any] | None = None) -> list[str]:
        payload = payload or {"dialogue_id": "elder"}
        return self.js("([n, name, p]) => Array.from({length: n}, () => client.track(name, p))", [n, name, payload])

    def wait_posts(self, n: int, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.posts) < n and time.monotonic() < deadline:
            self.page.wait_for_timeout(50)
        assert len(self.posts) >= n, (len(self.posts), n)

    def sent_ids(self) -> list[str]:
        return [e["event_id"] for p in self.posts if p["body"] for e in p["body"]["events"]]
