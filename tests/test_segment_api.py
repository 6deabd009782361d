"""Segment's Tracking API on the collector (in-process app, real server): the mapping table of
the README, each message stored or dead-lettered on its own, auth, limits, gzip, CORS."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from collector.segment import NAMESPACE, UNKNOWN_VERSION
from schemas.days import to_ms
from tests.conftest import WRITE_KEY
from tests.test_collector_support import client, dead_letters, iso, now, stored
from tests.test_privacy_collector import everything

BASIC = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
ORIGIN = "http://shop.example.test"
EMAIL = "grace.hopper@example.org"


def track(event: str = "dialogue_open", **over: Any) -> dict[str, Any]:
    msg: dict[str, Any] = {
        "type": "track", "event": event, "messageId": str(uuid.uuid4()),
        "userId": f"user-{uuid.uuid4().hex[:12]}", "timestamp": iso(now()),
        "properties": {"dialogue_id": "elder", "command": "build", "colour": "red"},
        "context": {"app": {"version": "3.1.4"}, "os": {"name": "iOS"},
                    "library": {"name": "analytics-ios", "version": "4.1"}},
    }
    msg.update(over)
    return msg


def post(c: Any, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    return c.post(path, content=json.dumps(body),
                  headers={"Content-Type": "application/json", **BASIC, **(headers or {})})


def test_a_batch_maps_onto_the_catalog_as_the_readme_table_says(env, r, settings):
    sent = iso(now())
    anon = f"anon-{uuid.uuid4().hex[:10]}"
    session = str(uuid.uuid4())
    msgs = [
        track(),
        track("command_executed", userId=None, anonymousId=anon, messageId="ajs-next-1b2c3d",
              properties={"command": "build", "success": False, "session_id": session},
              context={"device": {"type": "Android"}}),
        track("village_active", userId=42, anonymousId=anon,
              context={"library": {"name": "@segment/analytics-node"}}),
    ]
    with client(env) as c:
        resp = post(c, "/v1/batch", {"batch": msgs, "sentAt": sent})
    assert resp.status_code == 200 and resp.json() == {"success": True}
    got = {e.name: e for _, e in stored(r, settings)}
    assert set(got) == {"dialogue_open", "command_executed", "village_active"}
    first, second, third = got["dialogue_open"], got["command_executed"], got["village_active"]
    assert uuid.UUID(first.event_id) == uuid.UUID(msgs[0]["messageId"])  # a UUID messageId as is
    assert uuid.UUID(second.event_id) == uuid.uuid5(NAMESPACE, "ajs-next-1b2c3d")  # else derived
    assert first.payload == {"dialogue_id": "elder"}  # the catalog's allow-list, nothing else
    assert second.payload == {"command": "build", "success": False}
    assert (first.app_version, first.platform) == ("3.1.4", "ios")  # context.app.version, os.name
    assert (second.app_version, second.platform) == (UNKNOWN_VERSION, "android")  # device.type
    assert third.platform == "analytics-node"  # library.name, its npm scope dropped
    assert second.session is not None and first.session is None
    assert first.ts == to_ms(datetime.fromisoformat(msgs[0]["timestamp"]))  # no skew: as sent
    # users and anonymous ids apart, as seed 002 keeps them; the actor is the user when known
    assert first.user is not None and first.anonymous is None and first.village == first.user
    assert second.user is None and second.anonymous is not None and second.village == second.anonymous
    assert third.user is not None and third.anonymous == second.anonymous and third.village == third.user
    assert len({e.village for e in got.values()}) == 3
    assert dead_letters(r) == []


def test_segment_clock_skew_rule_corrects_each_message(env, r, settings):
    """timestamp = receivedAt - (sentAt - originalTimestamp): a client clock an hour fast."""
    fast = now() + timedelta(hours=1)
    happened = fast - timedelta(minutes=10)  # on the client's clock
    single = track(originalTimestamp=iso(happened), timestamp=None, sentAt=iso(fast))
    batched = track(timestamp=iso(happened))
    with client(env) as c:
        before = to_ms(now())
        assert post(c, "/v1/t", single).status_code == 200  # sentAt in the message
        assert post(c, "/v1/batch", {"batch": [batched], "sentAt": iso(fast)}).status_code == 200
        after = to_ms(now())
    events = [e for _, e in stored(r, settings)]
    assert len(events) == 2
    for ev in events:
        # ten minutes before arrival, whatever the client's clock said
        assert before - 600_000 - 50 <= ev.ts <= after - 600_000 + 50
        assert ev.ts_original == to_ms(happened)  # the time as sent is kept (dedup keys on it)


def test_a_refused_message_is_dead_lettered_with_its_reason_the_rest_stored(env, r, settings):
    msgs = [
        track(),
        track("no_such_event"),
        track(properties={"dialogue_id": "not a token!"}),
        track(userId=None),  # no actor at all
        track(timestamp="yesterday"),
        "not an object",
        track(properties={"dialogue_id": "elder", "blob": "x" * 40_000}),  # over 32 KB
        track(),
    ]
    with client(env) as c:
        resp = post(c, "/v1/batch", {"batch": msgs})
    assert resp.status_code == 200 and resp.json() == {"success": True}
    assert len(stored(r, settings)) == 2
    rejected = {rec["index"]: rec for _, rec in dead_letters(r)}
    assert {i: rec["reason"] for i, rec in rejected.items()} == {
        1: "unknown_event", 2: "invalid", 3: "invalid", 4: "invalid", 5: "malformed", 6: "too_large",
    }
    assert rejected[2]["errors"][0].startswith("$.batch[2].payload.dialogue_id")
    assert "userId or an anonymousId" in rejected[3]["errors"][0]
    assert rejected[4]["errors"][0].startswith("$.batch[4].timestamp")
    assert "SEGMENT_MAX_MESSAGE_BYTES" in rejected[6]["errors"][0]
    assert uuid.UUID(rejected[6]["event_id"]) == uuid.UUID(msgs[6]["messageId"])


def test_a_retried_batch_is_counted_once(env, r, settings):
    body = {"batch": [track() for _ in range(5)], "sentAt": iso(now())}
    with client(env) as c:
        for _ in range(3):
            assert post(c, "/v1/batch", {**body, "sentAt": iso(now())}).status_code == 200
    assert len(stored(r, settings)) == 5


def test_a_skewed_clients_retry_with_a_later_sent_at_is_still_a_duplicate(env, r, settings):
    """The corrected time moves with each attempt's sentAt; the dedup keys on the time as sent."""
    fast = now() + timedelta(hours=3)
    msgs = [track(timestamp=iso(fast - timedelta(minutes=i))) for i in range(4)]
    with client(env) as c:
        for late in (0, 2, 5):  # answers lost twice; the retries' sentAt hours later
            resp = post(c, "/v1/batch", {"batch": msgs, "sentAt": iso(fast + timedelta(hours=late))})
            assert resp.status_code == 200
    events = [e for _, e in stored(r, settings)]
    assert len(events) == 4
    assert {e.ts_original for e in events} == {to_ms(datetime.fromisoformat(m["timestamp"])) for m in msgs}


def test_identify_group_alias_leave_no_trait_in_redis(env, r, settings):
    user = f"user-{uuid.uuid4().hex}"
    msgs = [
        {"type": "identify", "userId": user, "anonymousId": "anon-x1",
         "traits": {"email": EMAIL, "name": "Grace Hopper", "plan": "pro"}},
        {"type": "group", "userId": user, "groupId": "acme-corp-991", "traits": {"email": EMAIL}},
        {"type": "alias", "userId": user, "previousId": "anon-previous-552"},
        track(userId=user, context={"traits": {"email": EMAIL}, "ip": "203.0.113.77"}),
    ]
    with client(env) as c:
        assert post(c, "/v1/batch", {"batch": msgs}).status_code == 200
        assert post(c, "/v1/identify", {"userId": user, "traits": {"email": EMAIL}}).status_code == 200
    reasons = sorted((rec["event_name"], rec["reason"]) for _, rec in dead_letters(r))
    assert reasons == [("alias", "unknown_event"), ("group", "unknown_event"),
                       ("identify", "unknown_event"), ("identify", "unknown_event")]
    assert all(rec["event"]["payload"] == {} for _, rec in dead_letters(r))  # no trait kept at all
    assert len(stored(r, settings)) == 1
    blob = b"\n".join(everything(r))
    for raw in (EMAIL, "Grace Hopper", user, "anon-x1", "acme-corp-991", "anon-previous-552",
                "203.0.113.77"):
        assert raw.encode() not in blob, raw
    assert b"analytics:deadletter" in blob  # the scan saw the dead-letter stream


@pytest.mark.parametrize("path,kind", [("/v1/t", "track"), ("/v1/track", "track"),
                                       ("/v1/p", "page"), ("/v1/page", "page"),
                                       ("/v1/s", "screen"), ("/v1/i", "identify")])
def test_single_message_routes_take_the_type_from_the_path(env, r, settings, path, kind):
    msg = track()
    msg.pop("type")
    with client(env) as c:
        assert post(c, path, msg).status_code == 200
    if kind == "track":
        assert [e.name for _, e in stored(r, settings)] == ["dialogue_open"]
    else:  # page_view, screen_view, identify: not in the default catalog
        [(_, rec)] = dead_letters(r)
        assert rec["reason"] == "unknown_event" and rec["errors"][0].startswith("$.event_name")


def test_write_key_from_basic_header_or_body_and_refusals(env, r, settings):
    msg = track()
    with client(env) as c:
        no_key = c.post("/v1/batch", content=json.dumps({"batch": [msg]}),
                        headers={"Content-Type": "application/json"})
        bad = post(c, "/v1/batch", {"batch": [msg]},
                   {"Authorization": "Basic " + base64.b64encode(b"nope:").decode()})
        bad_body = c.post("/v1/t", content=json.dumps({**msg, "writeKey": "nope"}),
                          headers={"Content-Type": "text/plain"})
        assert stored(r, settings) == []
        header = c.post("/v1/batch", content=json.dumps({"batch": [track()]}),
                        headers={"Content-Type": "application/json", "X-Write-Key": WRITE_KEY})
        beacon = c.post("/v1/t", content=json.dumps({**track(), "writeKey": WRITE_KEY}),
                        headers={"Content-Type": "text/plain;charset=UTF-8"})
        batch_key = c.post("/v1/b", content=json.dumps({"batch": [track()], "writeKey": WRITE_KEY}),
                           headers={"Content-Type": "text/plain"})
    for resp in (no_key, bad, bad_body):
        assert resp.status_code == 401, resp.text
        body = resp.json()
        assert body["error"] == body["code"] == "unauthorized" and body["detail"] == body["message"]
    assert [x.status_code for x in (header, beacon, batch_key)] == [200, 200, 200]
    assert len(stored(r, settings)) == 3


def test_malformed_requests_are_4xx_with_the_reason(env, r, settings):
    with client(env, SEGMENT_MAX_BATCH_BYTES="20000") as c:
        cases = {
            "not json": c.post("/v1/batch", content=b"{oops",
                               headers={"Content-Type": "application/json", **BASIC}),
            "no batch": post(c, "/v1/batch", {"messages": []}),
            "batch not a list": post(c, "/v1/batch", {"batch": {"type": "track"}}),
            "single not an object": post(c, "/v1/track", [track()]),
            "bad sentAt": post(c, "/v1/batch", {"batch": [track()], "sentAt": "soon"}),
            "too large": post(c, "/v1/batch", {"batch": [track() for _ in range(60)]}),
            "media type": c.post("/v1/batch", content=b"batch=1",
                                 headers={"Content-Type": "application/x-www-form-urlencoded", **BASIC}),
        }
    want = {"not json": 400, "no batch": 400, "batch not a list": 400, "single not an object": 400,
            "bad sentAt": 400, "too large": 413, "media type": 415}
    assert {k: v.status_code for k, v in cases.items()} == want
    for name, resp in cases.items():
        assert resp.json()["detail"], name
    assert "sentAt" in cases["bad sentAt"].json()["detail"]
    assert "SEGMENT_MAX_BATCH_BYTES" in cases["too large"].json()["detail"]
    assert stored(r, settings) == [] and dead_letters(r) == []


def test_gzip_bodies_and_opt_out(env, r, settings):
    body = json.dumps({"batch": [track(), track()]}).encode()
    with client(env) as c:
        resp = c.post("/v1/batch", content=gzip.compress(body), headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip", **BASIC})
        broken = c.post("/v1/batch", content=gzip.compress(body)[:-9], headers={
            "Content-Type": "application/json", "Content-Encoding": "gzip", **BASIC})
        dnt = post(c, "/v1/batch", {"batch": [track()]}, {"DNT": "1"})
    assert resp.status_code == 200 and broken.status_code == 400
    assert dnt.status_code == 200 and dnt.json() == {"success": True}  # Segment's answer, nothing kept
    assert len(stored(r, settings)) == 2


def test_context_ip_and_user_agent_are_kept_masked_and_parsed_only(env, r, settings):
    iphone = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
              "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
    linux = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36"
    msgs = [track(context={"ip": "203.0.113.77", "userAgent": iphone}),
            track(context={"ip": "2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff"}),
            track(context={})]
    with client(env) as c:  # the request's own User-Agent stands in where the message has none
        assert post(c, "/v1/batch", {"batch": msgs}, {"User-Agent": linux}).status_code == 200
    got = {uuid.UUID(e.event_id): e.client for _, e in stored(r, settings)}
    assert got[uuid.UUID(msgs[0]["messageId"])] == {
        "ip": "203.0.113.0", "browser": "Mobile Safari", "os": "iOS", "device_type": "mobile"}
    assert got[uuid.UUID(msgs[1]["messageId"])] == {
        "ip": "2001:db8:aaaa::", "browser": "Chrome", "os": "Linux", "device_type": "desktop"}
    assert got[uuid.UUID(msgs[2]["messageId"])] == {  # the test client's peer is not an IP
        "browser": "Chrome", "os": "Linux", "device_type": "desktop"}
    blob = b"\n".join(everything(r))
    for raw in (b"203.0.113.77", b"eeee:ffff", b"iPhone OS 17_0", b"X11; Linux"):
        assert raw not in blob


def test_cors_preflight_and_text_plain_posts_on_the_segment_routes(env, r, settings):
    with client(env, ANALYTICS_ALLOWED_ORIGINS=ORIGIN) as c:
        for path in ("/v1/t", "/v1/b", "/v1/batch", "/v1/identify"):
            pre = c.options(path, headers={
                "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type,x-retry-count,x-write-key",
            })
            assert pre.status_code == 200, (path, pre.text)
            assert pre.headers["access-control-allow-origin"] == ORIGIN
            allowed = pre.headers["access-control-allow-headers"].lower()
            assert all(h in allowed for h in ("authorization", "content-type", "x-retry-count"))
        resp = c.post("/v1/t", content=json.dumps({**track(), "writeKey": WRITE_KEY}),
                      headers={"Content-Type": "text/plain", "Origin": ORIGIN})
    assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == ORIGIN
    assert len(stored(r, settings)) == 1


def test_openapi_lists_the_segment_routes(env, r):
    with client(env) as c:
        paths = c.get("/openapi.json").json()["paths"]
    for name in ("batch", "b", "track", "t", "page", "p", "screen", "s", "identify", "i",
                 "group", "g", "alias", "a"):
        assert "200" in paths[f"/v1/{name}"]["post"]["responses"], name


def test_the_sent_message_time_is_kept_when_the_clock_is_right(env, r, settings):
    at = datetime.now(timezone.utc) - timedelta(hours=30)
    with client(env) as c:
        post(c, "/v1/batch", {"batch": [track(timestamp=iso(at))], "sentAt": iso(now())})
    [(_, ev)] = stored(r, settings)
    assert ev.ts == ev.ts_original == to_ms(at)
