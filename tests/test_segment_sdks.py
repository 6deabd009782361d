"""Issue 12's acceptance: stock Segment and RudderStack SDKs, unmodified, against the running
collector, workers and KPI API. Each SDK sends through a proxy that loses the collector's answer
to its first batch, so the SDK retries a batch already stored; its error callback is never called,
the KPIs equal the ground truth of what it was told to send (the retried batch counted once), and
no trait, raw id or email of an identify is anywhere in Redis."""

from __future__ import annotations

import json
import random
import subprocess
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from schemas.settings import Settings
from tests import services
from tests.conftest import WRITE_KEY
from tests.sdk_helpers import stored_events, stored_ids
from tests.segment_helpers import Plan, RetryProxy, assert_kpis_equal_truth, plan
from tests.test_privacy_collector import everything

ROOT = Path(__file__).resolve().parent.parent
NODE_SCRIPT = Path(__file__).with_name("segment_node_send.mjs")


class Pipeline:
    def __init__(self, env: dict[str, str], r: redis.Redis) -> None:
        self.env, self.r = env, r
        self.settings = Settings.from_env(env)
        self.collector = services.collector(env)
        self.kpi = services.kpi_api(env)
        self.worker = services.aggregator(env, "segment-sdk")

    def stop(self) -> None:
        assert self.worker.stop() == 0
        self.kpi.stop()
        self.collector.stop()

    def check(self, p: Plan, proxy: RetryProxy, platform: str, app_version: str = "unknown") -> None:
        """Every track stored once though the first batch went twice; KPIs and Redis as promised;
        the platform from the SDK's ``context.library.name``, as the README's table says."""
        posted = proxy.message_ids()
        assert any(n > 1 for n in posted.values()), "the SDK did not retry the batch whose answer was lost"
        assert len(posted) == len(p.messages)  # every message reached the collector
        services.wait_drained(self.r, self.settings)
        ids = stored_ids(self.r, self.settings)
        assert sum(ids.values()) == p.tracks and set(ids.values()) == {1}
        stored = stored_events(self.r, self.settings)
        assert {(e.platform, e.app_version) for e in stored} == {(platform, app_version)}
        assert_kpis_equal_truth(self.kpi.url, p)
        blob = b"\n".join(everything(self.r))
        assert b"analytics:{s" in blob  # the scan saw the shard keys
        for raw in (p.email, p.email.split("@")[0], *p.raw_ids):
            assert raw.encode() not in blob, raw


@pytest.fixture
def pipeline(env: dict[str, str], r: redis.Redis) -> Iterator[Pipeline]:
    from tests.sdk_helpers import APP

    pipe = Pipeline({**env, "ANALYTICS_ALLOWED_ORIGINS": APP}, r)
    try:
        yield pipe
    finally:
        pipe.stop()


def _python_sdk_send(client: Any, p: Plan) -> None:
    for m in p.messages:
        who = {"user_id": m.get("userId"), "anonymous_id": m.get("anonymousId")}
        if m["type"] == "identify":
            client.identify(traits=m["traits"], **who)
        else:
            client.track(event=m["event"], properties=m["properties"],
                         timestamp=datetime.fromisoformat(m["timestamp"]), **who)


@pytest.mark.parametrize("use_gzip", [False, True], ids=["plain", "gzip"])
def test_segment_analytics_python(pipeline: Pipeline, rng: random.Random, use_gzip: bool) -> None:
    from segment.analytics import Client

    p = plan(rng)
    errors: list[Any] = []
    with RetryProxy(pipeline.collector.url) as proxy:
        client = Client(WRITE_KEY, host=proxy.url, gzip=use_gzip, upload_size=25, upload_interval=0.1,
                        on_error=lambda e, batch: errors.append(e), max_retries=5)
        _python_sdk_send(client, p)
        client.flush()
        client.shutdown()
    assert errors == []
    assert all(post["status"] == 200 for post in proxy.posts)
    pipeline.check(p, proxy, "analytics-python")


def test_rudder_sdk_python(pipeline: Pipeline, rng: random.Random) -> None:
    import rudderstack.analytics as rudder_analytics

    p = plan(rng)
    errors: list[Any] = []
    with RetryProxy(pipeline.collector.url) as proxy:
        # the module-level configuration of RudderStack's README, gzip on by default
        rudder_analytics.write_key = WRITE_KEY
        rudder_analytics.dataPlaneUrl = proxy.url
        rudder_analytics.on_error = lambda e, batch: errors.append(e)
        try:
            _python_sdk_send(rudder_analytics, p)
            assert rudder_analytics.default_client.gzip
            rudder_analytics.flush()
            rudder_analytics.shutdown()
        finally:
            rudder_analytics.default_client = None
    assert errors == []
    pipeline.check(p, proxy, "analytics-python")  # RudderStack's library keeps Segment's name


def test_segment_analytics_node(pipeline: Pipeline, rng: random.Random) -> None:
    p = plan(rng)
    with RetryProxy(pipeline.collector.url) as proxy:
        run = subprocess.run(
            ["node", str(NODE_SCRIPT)], cwd=ROOT, timeout=120, capture_output=True, text=True,
            input=json.dumps({"writeKey": WRITE_KEY, "host": proxy.url, "messages": p.messages}),
        )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["errors"] == []
    assert result["delivered"] == len(p.messages)
    assert {post["path"] for post in proxy.posts} == {"/v1/batch"}
    pipeline.check(p, proxy, "analytics-node")


PAGE = """<!doctype html><html><head><script src="/analytics-next.js"></script></head><body>shop</body></html>"""

# identify only once the tracks are delivered: analytics.js stamps the identified user on every call
# it sends (or re-sends) after that
IDENTIFY = """async (messages) => {
  for (const m of messages.filter((m) => m.type === 'identify')) {
    const ctx = await analytics.identify(m.userId, m.traits)
    if (ctx.failedDelivery()) segmentErrors.push(String(ctx.failedDelivery().reason))
  }
}"""

SEND_FROM_PAGE = """async ([writeKey, apiHost, strategy, messages]) => {
  const errors = []
  const segment = { apiHost, protocol: 'http' }
  if (strategy === 'batching') segment.deliveryStrategy = { strategy: 'batching', config: { size: 10, timeout: 300 } }
  const [analytics] = await AnalyticsBrowser.load(
    // settings inline instead of the CDN's; no library telemetry
    { writeKey, cdnSettings: { integrations: { 'Segment.io': { apiKey: writeKey } }, metrics: { sampleRate: 0 } } },
    { integrations: { 'Segment.io': segment } },
  )
  analytics.on('error', (e) => errors.push(String(e && (e.reason || e.code) || e)))
  const check = (ctxs) => ctxs.forEach((ctx) => { if (ctx.failedDelivery()) errors.push(String(ctx.failedDelivery().reason)) })
  const tracks = messages.filter((m) => m.type === 'track').map((m) => analytics.track(
    m.event, m.properties,
    { ...(m.userId ? { userId: m.userId } : { anonymousId: m.anonymousId }),
      timestamp: new Date(m.timestamp), context: { app: { version: '5.2.0' } } }))
  check(await Promise.all(tracks))
  window.analytics = analytics
  window.segmentErrors = errors
  return { errors, anonymousId: analytics.user().anonymousId() }
}"""


@pytest.mark.parametrize("strategy", ["standard", "batching"])
def test_segment_analytics_next_in_chromium(pipeline: Pipeline, rng: random.Random, tmp_path: Path,
                                            strategy: str) -> None:
    from tests.sdk_helpers import APP, browser_context

    bundle = tmp_path / "analytics-next.js"
    esbuild = ROOT / "sdk" / "js" / "node_modules" / ".bin" / "esbuild"
    subprocess.run([str(esbuild), str(Path(__file__).with_name("segment_browser_entry.js")), "--bundle",
                    "--format=iife", "--target=es2019", "--log-level=warning", f"--outfile={bundle}"],
                   cwd=ROOT, check=True, timeout=120)
    p = plan(rng, tracks=40)
    requests: list[str] = []
    with RetryProxy(pipeline.collector.url) as proxy, browser_context() as ctx:
        def serve(route: Any) -> None:
            if route.request.url.endswith("/analytics-next.js"):
                route.fulfill(status=200, content_type="text/javascript", body=bundle.read_bytes())
            else:
                route.fulfill(status=200, content_type="text/html", body=PAGE)

        ctx.route(f"{APP}/**", serve)
        ctx.on("request", lambda req: requests.append(req.url))
        page = ctx.new_page()
        page_errors: list[str] = []
        page.on("pageerror", lambda exc: page_errors.append(str(exc)))
        page.goto(f"{APP}/")
        page.wait_for_function("() => typeof AnalyticsBrowser === 'function'")
        api_host = proxy.url.removeprefix("http://") + "/v1"
        out = page.evaluate(SEND_FROM_PAGE, [WRITE_KEY, api_host, strategy, p.messages])

        def wait_delivered(n: int) -> None:
            for _ in range(600):
                if len(proxy.delivered()) >= n:
                    return
                page.wait_for_timeout(100)

        wait_delivered(p.tracks)
        page.evaluate(IDENTIFY, p.messages)
        wait_delivered(len(p.messages))
        errors = page.evaluate("() => window.segmentErrors")
    assert out["errors"] == [] and errors == [] and page_errors == []
    assert len(proxy.delivered()) == len(p.messages)
    paths = {post["path"] for post in proxy.posts}
    assert paths == ({"/v1/t", "/v1/i"} if strategy == "standard" else {"/v1/b"})
    assert {post["content_type"].split(";")[0] for post in proxy.posts} == {"text/plain"}
    # nothing fetched from anywhere but the page and the collector (no CDN settings, no plugins)
    assert all(u.startswith(APP) or u.startswith(proxy.url) for u in requests), requests
    p.raw_ids.append(out["anonymousId"])
    pipeline.check(p, proxy, "analytics-js", app_version="5.2.0")


def test_seed002_counts_segment_users_and_anonymous_visitors_apart(env: dict[str, str], r: redis.Redis,
                                                                   rng: random.Random) -> None:
    """Under seed 002's profile, page() and track() from segment-analytics-python fill the seed's
    daily summary: page views and services viewed by type, signed-in users and anonymous ids
    (seen without a user) counted apart."""
    from segment.analytics import Client

    from tests.kpi_helpers import auth

    pipe = Pipeline({**env, "ANALYTICS_PROFILE": "seed002", "KPI_MIN_GROUP_SIZE": "1"}, r)
    tag = uuid.uuid4().hex[:8]
    people = [("user", f"u-{tag}-{i}") for i in range(7)] + [("anon", f"a-{tag}-{i}") for i in range(5)]
    now = datetime.now(timezone.utc)
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    users: dict[str, set[str]] = defaultdict(set)
    anonymous: dict[str, set[str]] = defaultdict(set)
    errors: list[Any] = []
    try:
        client = Client(WRITE_KEY, host=pipe.collector.url, upload_size=20, upload_interval=0.1,
                        on_error=lambda e, batch: errors.append(e))
        for _ in range(80):
            kind, who = rng.choice(people)
            ids = {"user_id": who} if kind == "user" else {"anonymous_id": who}
            at = now - timedelta(seconds=rng.randrange(60, 40 * 3600))
            if rng.random() < 0.5:
                client.page(name="Pricing", properties={"path": "/pricing", "title": "Prices"},
                            timestamp=at, **ids)
                name = "page_view"
            else:
                client.track(event="service_viewed", properties={"service_id": f"svc-{rng.randrange(4)}"},
                             timestamp=at, **ids)
                name = "service_viewed"
            d = at.strftime("%Y-%m-%d")
            totals[d][name] += 1
            (users if kind == "user" else anonymous)[d].add(who)
        client.flush()
        client.shutdown()
        assert errors == []
        services.wait_drained(r, pipe.settings)
        with httpx.Client(base_url=pipe.kpi.url, headers=auth("admin")) as k:
            for d in sorted(totals):
                summary = k.get(f"/api/admin/analytics/daily-summary/?date={d}").json()
                assert summary["total_events"] == sum(totals[d].values()), summary
                assert summary["events_by_type"] == dict(sorted(totals[d].items())), summary
                assert (summary["unique_users"], summary["unique_anonymous"]) == (len(users[d]), len(anonymous[d]))
    finally:
        pipe.stop()
