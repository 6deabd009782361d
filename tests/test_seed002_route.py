"""Seed 002 (``ANALYTICS_PROFILE=seed002``): the seed's own bodies, verbatim, through the running
collector, workers and KPI API. Its reports equal ground truth computed from what was sent
(signed-in users and anonymous visitors apart), the export's rows carry pseudonymous user ids and
masked IPs, and no raw IP, User-Agent, anonymous id or user id is left in Redis."""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import httpx
import redis
from starlette.testclient import TestClient

from collector.app import create_app
from infra import tokens
from schemas import keyspace
from schemas.settings import Settings
from tests import services
from tests.conftest import JWT_SECRET, WRITE_KEY
from tests.test_privacy_collector import everything

ROUTE = "/api/v1/analytics/events/"
# the seed's "Single Event" body, verbatim
SINGLE = json.loads("""{
  "event_type": "page_view",
  "anonymous_id": "anon-12345",
  "source": "android",
  "payload": {
    "page": "dashboard",
    "duration_seconds": 45
  }
}""")
# the seed's "Bulk Events" body, verbatim (no anonymous id: the header gives it, or nobody)
BULK = json.loads("""{
  "events": [
    {"event_type": "page_view", "payload": {"page": "home"}},
    {"event_type": "booking_created", "payload": {"booking_id": "123"}}
  ]
}""")
# the "Complete Flow" curl body, verbatim
FLOW = json.loads('{"event_type": "page_view", "source": "web", "payload": {"page": "home"}}')
# the event-type table's example payloads, verbatim (the table's emergency_request has a stray
# quote, `56.78"}`, which is not JSON; this is the payload it means, as the issue writes it)
TABLE = {
    "page_view": {"page": "dashboard", "section": "jobs"},
    "booking_created": {"booking_id": "123", "service_id": "456"},
    "booking_status": {"booking_id": "123", "status": "confirmed"},
    "job_apply": {"job_id": "789", "worker_id": "012"},
    "emergency_request": {"latitude": 12.34, "longitude": 56.78},
    "service_search": {"query": "plumber", "service_id": "456"},
}
IPS = ["203.0.113.77", "198.51.100.23", "2001:db8:85a3::8a2e:370:7334"]
MASKED = {"203.0.113.77": "203.0.113.0", "198.51.100.23": "198.51.100.0",
          "2001:db8:85a3::8a2e:370:7334": "2001:db8:85a3::"}  # last octet / last 80 bits zeroed
UAS = [
    "Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/UQ1A.240205.004) AppleWebKit/537.36 (KHTML, like "
    "Gecko) Chrome/121.0.6167.101 Mobile Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.2 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:122.0) Gecko/20100101 Firefox/122.0",
]
ENV = {"ANALYTICS_PROFILE": "seed002", "ANALYTICS_PUBLIC_INGEST": "true", "KPI_MIN_GROUP_SIZE": "1"}


class Sent:
    """Ground truth: what each stored event was sent as, keyed by the id the server answered."""

    def __init__(self) -> None:
        self.events: dict[str, dict[str, Any]] = {}

    def add(self, eid: str, body: dict[str, Any], user: str | None, anon: str | None, ip: str) -> None:
        self.events[eid] = {"type": body["event_type"], "user": user,
                            "anon": body.get("anonymous_id") or anon, "ip": ip, "payload": body["payload"]}


def post(c: httpx.Client, sent: Sent, body: dict[str, Any], ip: str, ua: str,
         user: str | None = None, anon: str | None = None) -> None:
    headers = {"X-Forwarded-For": ip, "User-Agent": ua}
    if user is not None:
        headers["Authorization"] = f"Bearer {tokens.issue(JWT_SECRET, role='customer', subject=user)}"
    if anon is not None:
        headers["X-Client-ANON-ID"] = anon
    resp = c.post(ROUTE, json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    got = resp.json()
    if "events" in body:
        assert got["events_created"] == len(body["events"]) and got["rejected"] == []
        for eid, ev in zip(got["event_ids"], body["events"]):
            sent.add(eid, ev, user, anon, ip)
    else:
        assert set(got) == {"event_id"}
        sent.add(got["event_id"], body, user, anon, ip)


def test_seed002_examples_through_the_services(env: dict[str, str], r: redis.Redis,
                                                 rng: random.Random) -> None:
    env = {**env, **ENV}
    settings = Settings.from_env(env)
    users = [f"seed002-user-{rng.getrandbits(32):08x}" for _ in range(4)]
    anons = [f"anon-{rng.getrandbits(36):09x}" for _ in range(5)]  # the seed's JS client's format
    linked = f"anon-{rng.getrandbits(36):09x}"  # only ever seen with a signed-in user
    flutter = f"anon-{uuid.UUID(int=rng.getrandbits(128), version=4)}"  # the Flutter client's
    sent = Sent()
    collector = services.collector(env)
    kpi = services.kpi_api(env)
    worker = services.aggregator(env, "seed002")
    try:
        with httpx.Client(base_url=collector.url, timeout=30) as c:
            post(c, sent, SINGLE, IPS[0], UAS[0])  # public: no write key
            post(c, sent, BULK, IPS[1], UAS[1], anon=anons[0])
            post(c, sent, BULK, IPS[1], UAS[1])  # neither user nor anonymous id
            post(c, sent, FLOW, IPS[2], UAS[2])
            for kind, payload in TABLE.items():  # each by a signed-in user, some with an anon id too
                post(c, sent, {"event_type": kind, "source": "web", "payload": payload},
                     rng.choice(IPS), rng.choice(UAS), user=rng.choice(users),
                     anon=linked if kind in ("page_view", "job_apply") else rng.choice([None, *anons]))
            for anon in anons:  # the seed's JavaScript client: page view and booking
                post(c, sent, {"event_type": "page_view", "source": "web",
                               "payload": {"page": "/jobs/list", "referrer": "https://example.org/x"}},
                     rng.choice(IPS), UAS[2], anon=anon)
                post(c, sent, {"event_type": "booking_created", "anonymous_id": anon, "source": "web",
                               "payload": {"booking_id": f"bk-{rng.getrandbits(20)}"}}, rng.choice(IPS), UAS[2])
            post(c, sent, {"event_type": "page_view", "anonymous_id": flutter, "source": "android",
                           "payload": {"page": "dashboard"}}, IPS[0], UAS[0])
            precise = {"latitude": 12.345678, "longitude": -56.789012}
            post(c, sent, {"event_type": "emergency_request", "source": "ios", "payload": precise},
                 IPS[2], UAS[1], user=users[0])
            assert c.post(ROUTE, json=SINGLE, headers={"DNT": "1"}).status_code == 204
        services.wait_drained(r, settings)

        today = datetime.now(timezone.utc).date().isoformat()
        events = list(sent.events.values())
        signed_in = {e["user"] for e in events if e["user"]}
        anonymous = {e["anon"] for e in events if e["anon"] and not e["user"]}
        by_type = Counter(e["type"] for e in events)
        assert len(signed_in) >= 2 and len(anonymous) >= 5
        admin = {"Authorization": f"Bearer {tokens.issue(JWT_SECRET, role='admin')}"}
        with httpx.Client(base_url=kpi.url, headers=admin, timeout=30) as k:
            summary = k.get(f"/api/admin/analytics/daily-summary/?date={today}")
            assert summary.status_code == 200, summary.text
            assert summary.json() == {"date": today, "total_events": len(events),
                                      "unique_users": len(signed_in), "unique_anonymous": len(anonymous),
                                      "events_by_type": dict(sorted(by_type.items()))}
            active = k.get(f"/api/admin/analytics/active-users/?date={today}").json()
            assert active == {"date": today, "daily_active_users": len(signed_in),
                              "unique_anonymous": len(anonymous),
                              "total_active": len(signed_in) + len(anonymous)}
            text = k.get(f"/api/admin/analytics/export/?date={today}").text
    finally:
        worker.stop()
        kpi.stop()
        collector.stop()

    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(text))}
    assert set(rows) == set(sent.events)
    pseudonyms: dict[str, set[str]] = {}
    for eid, ev in sent.events.items():
        row = rows[eid]
        assert row["event_type"] == ev["type"] and row["ip_address"] == MASKED[ev["ip"]]
        assert bool(row["user_id"]) == bool(ev["user"]) and row["user_id"] != ev["user"]
        if ev["user"]:
            pseudonyms.setdefault(ev["user"], set()).add(row["user_id"])
        if ev["anon"]:
            assert row["anonymous_id"] and row["anonymous_id"] != ev["anon"]
        payload = json.loads(row["payload"])
        if ev["type"] == "emergency_request":  # coordinates stored coarsened, to 2 decimals
            want = {f: round(ev["payload"][f], 2) for f in ("latitude", "longitude")}
            assert payload == want
        if ev["type"] == "page_view":
            assert payload["page"] == ev["payload"]["page"]  # "dashboard": no leading slash
    assert all(len(p) == 1 for p in pseudonyms.values())  # one user, one pseudonym
    assert len({next(iter(p)) for p in pseudonyms.values()}) == len(pseudonyms)

    blob = b"\n".join(everything(r))
    assert b"analytics:{s" in blob
    needles = [*IPS, *UAS, "Pixel 8", "rv:122.0", "anon-12345", *anons, linked, flutter, *users,
               "plumber", "12.345678", "56.789012", "example.org"]
    assert [n for n in needles if n.encode() in blob] == []


def test_seed002_route_answers(env: dict[str, str], r: redis.Redis) -> None:
    """Auth by mode, 204s, the size limit per event, and errors named in the seed's fields."""
    base = {**env, "ANALYTICS_PROFILE": "seed002", "ANALYTICS_MAX_EVENT_SIZE": "256"}
    with TestClient(create_app(Settings.from_env(base))) as c:  # not public: a write key, as anywhere
        assert c.post(ROUTE, json=SINGLE).status_code == 401
        assert c.post(ROUTE, json=SINGLE, headers={"X-Write-Key": WRITE_KEY}).status_code == 201
        user = tokens.issue(JWT_SECRET, role="customer", subject="u-1")
        assert c.post(ROUTE, json=SINGLE, headers={"Authorization": f"Bearer {user}"}).status_code == 201
    public = {**base, "ANALYTICS_PUBLIC_INGEST": "true"}
    with TestClient(create_app(Settings.from_env(public))) as c:
        assert c.post(ROUTE, json=SINGLE).status_code == 201
        bad_token = c.post(ROUTE, json=SINGLE, headers={"Authorization": "Bearer forged"})
        assert bad_token.status_code == 401  # credentials sent must be valid, public or not
        big = {**SINGLE, "payload": {"page": "dashboard", "section": "x" * 300}}
        resp = c.post(ROUTE, json=big)
        assert resp.status_code == 413 and "ANALYTICS_MAX_EVENT_SIZE" in resp.json()["detail"]
        resp = c.post(ROUTE, json={"events": [SINGLE, big, {"event_type": "signup", "payload": {}},
                                              {"event_type": "job_apply", "payload": {}}]})
        assert resp.status_code == 201, resp.text
        body = resp.json()
        assert body["events_created"] == 1 and len(body["event_ids"]) == 1
        errors = {row["index"]: " ".join(row["errors"]) for row in body["rejected"]}
        assert set(errors) == {1, 2, 3}
        assert "ANALYTICS_MAX_EVENT_SIZE" in errors[1]
        assert "$.events[2].event_type" in errors[2] and "signup" in errors[2]
        assert "$.events[3].payload" in errors[3] and "job_id" in errors[3]
        single_bad = c.post(ROUTE, json={"event_type": "page_view", "payload": {"page": "no spaces"}})
        assert single_bad.status_code == 400 and "$.payload.page" in single_bad.json()["detail"]
        assert r.xlen(keyspace.DEAD_LETTER) == 4  # every rejected event kept, with its reason
        for malformed in ("[1, 2]", "{", '{"events": 3}'):
            resp = c.post(ROUTE, content=malformed, headers={"Content-Type": "application/json"})
            assert resp.status_code == 400 and set(resp.json()) == {"error", "detail"}
        assert c.post(ROUTE, json=SINGLE, headers={"DNT": "1"}).status_code == 204
    off = {**public, "ANALYTICS_ENABLED": "false"}
    with TestClient(create_app(Settings.from_env(off))) as c:
        assert c.post(ROUTE, json=SINGLE).status_code == 204
    assert r.xlen(keyspace.DEAD_LETTER) == 4
