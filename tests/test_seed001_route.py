"""Seed 001 (``ANALYTICS_PROFILE=seed001``): the seed's own bodies, verbatim, through the running
collector, workers and KPI API; DAU and event counts equal ground truth with resends counted once,
and nothing raw (user ids, session ids, search text) is left in Redis."""

from __future__ import annotations

import json
import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import redis
import redis.asyncio as aredis
from starlette.testclient import TestClient

from collector.app import create_app
from collector.seed001 import content_id
from infra import tokens
from schemas.settings import Settings
from tests import services
from tests.conftest import JWT_SECRET, WRITE_KEY
from tests.test_privacy_collector import everything

# the seed's "Batch Ingestion" curl body, verbatim
BATCH = json.loads("""[
    {
      "ts": "2024-01-01T12:00:00Z",
      "user_id": "user-123",
      "type": "page_view",
      "src": "web_app",
      "payload": {"page": "/dashboard"}
    },
    {
      "ts": "2024-01-01T12:01:00Z",
      "user_id": "user-123",
      "type": "button_click",
      "src": "web_app",
      "payload": {"button_id": "save_profile"}
    }
  ]""")
# the seed's "Event Schema" example, verbatim
SCHEMA_EVENT = json.loads("""{
  "ts": "2024-01-01T12:00:00Z",
  "user_id": "user-123",
  "type": "page_view",
  "src": "web_app",
  "payload": {
    "page": "/dashboard",
    "referrer": "/login",
    "session_id": "sess-456"
  }
}""")
# the payloads the seed's JavaScript SDK example tracks, verbatim
SDK_TRACKS = [
    ("page_view", {"page": "/dashboard"}),
    ("button_click", {"button_id": "save_profile"}),
    ("course_complete", {"course_id": "course-123", "completion_time": 3600, "score": 85}),
]
# the seed's types with no example payload: sent with the SDK's default, an empty payload
NO_EXAMPLE = ["form_submit", "video_play", "search_query", "error_occurred"]
QUERY = "how do I reset my password Ada"  # free text: stored only as a keyed hash
DAY0 = "2024-01-01"
# the seed's examples are dated 2024-01-01: a late window wide enough to count them
ENV = {"ANALYTICS_PROFILE": "seed001", "LATE_WINDOW_HOURS": str(24 * 365 * 10),
       "KPI_MIN_GROUP_SIZE": "1", "MAX_BATCH_SIZE": "40"}


def sdk_event(kind: str, payload: dict[str, Any], user: str, ts: datetime) -> dict[str, Any]:
    """What the seed's AnalyticsClient.track() builds."""
    return {"ts": ts.isoformat().replace("+00:00", "Z"), "user_id": user, "type": kind,
            "src": "web_app", "payload": payload}


def key(ev: dict[str, Any]) -> str:
    """Ground truth's identity of an event: its content (two identical events are one)."""
    ts = datetime.fromisoformat(ev["ts"].replace("Z", "+00:00"))
    return json.dumps([ev["user_id"], int(ts.timestamp() * 1000), ev["type"], ev["src"], ev["payload"]],
                      sort_keys=True)


def test_seed001_examples_through_the_services(env: dict[str, str], r: redis.Redis,
                                                 rng: random.Random) -> None:
    env = {**env, **ENV}
    settings = Settings.from_env(env)
    now = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    users = [f"seed001-user-{rng.getrandbits(32):08x}" for _ in range(7)]
    sdk = [sdk_event(kind, payload, user, now - timedelta(seconds=rng.randrange(3600)))
           for user in users for kind, payload in rng.sample(SDK_TRACKS, k=rng.randint(1, 3))]
    sdk += [sdk_event(kind, {}, rng.choice(users), now - timedelta(seconds=rng.randrange(3600)))
            for kind in NO_EXAMPLE]
    sdk.append(sdk_event("search_query", {"query": QUERY}, users[0], now))
    rng.shuffle(sdk)
    sends = [BATCH, [SCHEMA_EVENT], sdk[: len(sdk) // 2], sdk[len(sdk) // 2 :], BATCH, sdk]  # resends
    sent = [ev for body in sends for ev in body]

    token = tokens.issue(JWT_SECRET, role="web-backend", subject="app")  # any role may write
    collector = services.collector(env)
    kpi = services.kpi_api(env)
    worker = services.aggregator(env, "seed001")
    seen: set[str] = set()
    try:
        with httpx.Client(base_url=collector.url, timeout=30) as c:
            auth = {"Authorization": f"Bearer {token}"}
            for body in sends:
                resp = c.post("/api/analytics/ingest", json=body, headers=auth)
                assert resp.status_code == 200, resp.text
                new = {key(ev) for ev in body} - seen
                assert resp.json() == {"ingested": len(new), "duplicates": len(body) - len(new),
                                       "late": 0, "rejected": []}
                seen |= new
            assert c.post("/api/analytics/ingest", json=BATCH).status_code == 401
            bad = c.post("/api/analytics/ingest", json=BATCH, headers={"Authorization": "Bearer nope"})
            assert bad.status_code == 401 and set(bad.json()) == {"error", "detail"}
            keyed = c.post("/api/analytics/ingest", json=BATCH, headers={"X-Write-Key": WRITE_KEY})
            assert keyed.status_code == 401  # the seed's route takes its JWT, not a write key
            big = c.post("/api/analytics/ingest", json=BATCH * 21, headers=auth)
            assert big.status_code == 413 and "MAX_BATCH_SIZE=40" in big.json()["detail"]
            assert c.get("/api/analytics/healthz").json()["status"] == "ok"
            doc = c.get("/api/analytics/openapi.json").json()
            assert "post" in doc["paths"]["/api/analytics/ingest"]
            assert {"/api/analytics/healthz", "/api/analytics/docs"} <= set(doc["paths"])
        services.wait_drained(r, settings)

        unique = list({key(ev): ev for ev in sent}.values())
        dau: dict[str, set[str]] = defaultdict(set)
        counts: dict[str, Counter[str]] = defaultdict(Counter)
        for ev in unique:
            d = ev["ts"][:10]
            dau[d].add(ev["user_id"])
            counts[d][ev["type"]] += 1
        assert dau[DAY0] == {"user-123"} and counts[DAY0] == {"page_view": 2, "button_click": 1}
        staff = {"Authorization": f"Bearer {tokens.issue(JWT_SECRET, role='staff')}"}
        with httpx.Client(base_url=kpi.url, headers=staff, timeout=30) as k:
            for d in sorted(dau):
                got = k.get(f"/api/analytics/reports/dau?date={d}")
                assert got.status_code == 200, got.text
                assert got.json() == {"dau": len(dau[d]), "date": d, "period": "24h"}
                rows = k.get(f"/internal/analytics/kpis/events?start={d}&end={d}&group_by=event_name").json()
                assert {row["event_name"]: row["value"] for row in rows if row["value"]} == counts[d]
            assert k.get("/api/analytics/reports/dau?date=2024-01-02").json()["dau"] == 0
    finally:
        worker.stop()
        kpi.stop()
        collector.stop()

    blob = b"\n".join(everything(r))
    assert b"analytics:{s" in blob
    needles = ["user-123", *users, "sess-456", QUERY]
    assert [n for n in needles if n.encode() in blob] == []


def test_seed001_ids_and_errors(settings: Settings) -> None:
    """The derived id is the event's content; a bad element is listed in the seed's field names."""
    a = dict(BATCH[0])
    assert content_id(a) == content_id(json.loads(json.dumps(a)))  # stable across processes
    assert content_id(a) == content_id({**a, "ts": "2024-01-01T13:00:00+01:00"})  # the same instant
    assert content_id(a) != content_id({**a, "payload": {"page": "/dashboard", "x": 1}})
    s = Settings.from_env({"REDIS_URL": settings.redis_url or "", "JWT_SECRET_KEY": JWT_SECRET,
                           "ANALYTICS_PROFILE": "seed001"})
    auth = {"Authorization": f"Bearer {tokens.issue(JWT_SECRET, role='any')}"}
    with TestClient(create_app(s)) as c:
        bad = [{"user_id": "u1", "type": "page_view", "src": "web_app", "payload": {"page": "/"}},
               {"ts": "2025-01-01T00:00:00Z", "user_id": "u1", "type": "signup", "payload": {}},
               {"ts": "2025-01-01T00:00:00Z", "user_id": "u1", "type": "course_complete",
                "payload": {"completion_time": 3600}}]
        resp = c.post("/api/analytics/ingest", json=[*bad, BATCH[1]], headers=auth)
        assert resp.status_code == 200
        body = resp.json()
        assert (body["ingested"], body["duplicates"], body["late"]) == (1, 0, 1)  # 2024: late
        errors = {row["index"]: " ".join(row["errors"]) for row in body["rejected"]}
        assert set(errors) == {0, 1, 2}
        assert "$[0]" in errors[0] and "`ts`" in errors[0]
        assert "$[1].type" in errors[1] and "signup" in errors[1]
        assert "$[2].payload" in errors[2] and "course_id" in errors[2]
        old = c.post("/api/analytics/ingest", json=[SCHEMA_EVENT], headers=auth).json()
        assert (old["ingested"], old["late"]) == (1, 1)  # 2024: past the 48 h window, kept aside
        for payload_less in ("form_submit", "video_play", "search_query", "error_occurred"):
            ev = {"ts": "2025-01-01T00:00:00Z", "user_id": "u2", "type": payload_less, "src": "web_app"}
            assert c.post("/api/analytics/ingest", json=[ev], headers=auth).json()["ingested"] == 1
        for body_ in ({"ts": "x"}, "[1,", '"text"'):
            raw = body_ if isinstance(body_, str) else json.dumps(body_)
            resp = c.post("/api/analytics/ingest", content=raw, headers={**auth, "Content-Type": "application/json"})
            assert resp.status_code == 400 and set(resp.json()) == {"error", "detail"}
        assert c.post("/api/analytics/ingest", json=BATCH, headers={**auth, "DNT": "1"}).status_code == 204


def test_event_retention_days_is_the_seeds_name() -> None:
    assert Settings.from_env({"EVENT_RETENTION_DAYS": "30"}).analytics_retention_days == 30
    both = {"EVENT_RETENTION_DAYS": "30", "ANALYTICS_RETENTION_DAYS": "7"}
    assert Settings.from_env(both).analytics_retention_days == 7
    assert Settings.from_env({}).analytics_retention_days == 90


def test_seed001_docs_page_in_chromium(env: dict[str, str], r: redis.Redis) -> None:
    """``/api/analytics/docs`` is a working Swagger UI (served from node_modules, no CDN): real
    Chromium renders the collector's operations from ``/api/analytics/openapi.json``."""
    from playwright.sync_api import sync_playwright

    from tests.test_dashboard import ARGS, CHROMIUM

    collector = services.collector({**env, **ENV})
    requested: list[str] = []
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
            try:
                page = browser.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.on("request", lambda req: requested.append(req.url))
                page.goto(f"{collector.url}/api/analytics/docs")
                page.wait_for_selector(".opblock-summary-path", timeout=30_000)
                paths = page.eval_on_selector_all(
                    ".opblock-summary-path", "els => els.map(e => e.getAttribute('data-path'))")
                assert errors == []
            finally:
                browser.close()
    finally:
        collector.stop()
    assert {"/api/analytics/ingest", "/api/v1/analytics/events/", "/api/analytics/healthz"} <= set(paths)
    assert all(u.startswith(collector.url) for u in requested), requested  # nothing from a CDN


def test_kpi_api_openapi_and_metrics(env: dict[str, str], r: redis.Redis) -> None:
    """The KPI API's own OpenAPI document names every route it serves (the seed reports with
    their parameters), and its Prometheus metrics count latency by route template, cache hits
    and store errors."""
    from prometheus_client.parser import text_string_to_metric_families

    from kpi_api.app import create_app as kpi_app

    app = kpi_app(Settings.from_env({**env, **ENV}))
    staff = {"Authorization": f"Bearer {tokens.issue(JWT_SECRET, role='staff')}"}
    with TestClient(app) as k:
        doc = k.get("/openapi.json").json()
        served = {(route.path, m.lower()) for route in app.routes
                  for m in (getattr(route, "methods", None) or {"GET"}) if m != "HEAD"}
        assert served == {(p, m) for p, ops in doc["paths"].items() for m in ops}
        dau = doc["paths"]["/api/analytics/reports/dau"]["get"]
        assert [p["name"] for p in dau["parameters"]] == ["date"] and dau["security"] == [{"bearer": []}]
        for _ in range(3):
            assert k.get(f"/api/analytics/reports/dau?date={DAY0}", headers=staff).status_code == 200
        for name in ("daily-active-villages", "dau"):
            k.get(f"/internal/analytics/kpis/{name}?start={DAY0}&end={DAY0}", headers=staff)

        def samples() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
            text = k.get("/metrics").text
            return {(s.name, tuple(sorted(s.labels.items()))): s.value
                    for fam in text_string_to_metric_families(text) for s in fam.samples}

        before = samples()
        assert k.get(f"/api/analytics/reports/dau?date={DAY0}", headers=staff).status_code == 200
        after = samples()

        def delta(name: str, **labels: str) -> float:
            key = (name, tuple(sorted(labels.items())))
            return after.get(key, 0.0) - before.get(key, 0.0)

        assert delta("kpi_api_request_seconds_count", route="/api/analytics/reports/dau", status="2xx") == 1
        assert delta("kpi_api_cache_total", result="hit") == 1 and delta("kpi_api_cache_total", result="miss") == 0
        # one series per route template, never per raw path
        routes = {dict(lbl)["route"] for (n, lbl) in after if n == "kpi_api_request_seconds_count"}
        assert "/internal/analytics/kpis/{kpi}" in routes and not any("dau?" in x for x in routes)
        assert not any(x.endswith("/daily-active-villages") for x in routes)
        errors_before = after.get(("kpi_api_store_errors_total", ()), 0.0)
        live = app.state.redis
        app.state.redis = aredis.Redis(port=services.free_port())  # a store that is not there
        try:
            down = k.get("/api/analytics/reports/dau?date=2024-01-05", headers=staff)
        finally:
            app.state.redis = live
        assert down.status_code == 503
        assert samples()[("kpi_api_store_errors_total", ())] == errors_before + 1
