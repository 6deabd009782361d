"""The native batch route on a real server: partial batches, sanitisation, limits, statuses, time."""

from __future__ import annotations

import base64
import gzip
import json
import logging
import time
import uuid
from datetime import datetime, timedelta

import msgspec
import pytest

from collector.sanitize import MAX_ITEMS, MAX_STRING, sanitize
from infra import tokens
from schemas import keyspace
from schemas.days import to_ms
from tests.conftest import JWT_SECRET, WRITE_KEY
from tests.test_collector_support import (
    HEADERS, ROUTE, batch, client, dead_letters, event, iso, metric, now, stored,
)

ERROR_STATUSES = (400, 401, 413, 415, 429, 503)


def assert_error(resp, status: int, code: str | None = None) -> None:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error", "detail"} and isinstance(body["detail"], str)
    if code is not None:
        assert body["error"] == code


def test_partial_batch_stores_good_events_and_dead_letters_bad_ones(env, r, settings, rng):
    good = [event(rng, name) for name in
            ("village_active", "session_start", "session_end", "dialogue_open", "command_executed")]
    bad = {
        5: event(rng, ts_utc="yesterday"),
        6: event(rng, "no_such_event"),
        7: {k: v for k, v in event(rng).items() if k != "anon_village_id"},
        8: event(rng, "dialogue_open", payload={"dialogue_id": "free text with spaces!"}),
        9: event(rng, event_version=7),
    }
    events = good + [bad[i] for i in sorted(bad)]
    with client(env) as c:
        resp = c.post(ROUTE, headers=HEADERS, content=json.dumps(batch(events)))
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["accepted"] == len(good) and body["duplicates"] == 0
    rejected = {item["index"]: item for item in body["rejected"]}
    assert sorted(rejected) == sorted(bad)
    for index, item in rejected.items():
        assert item["event_id"] == bad[index]["event_id"]
        assert item["errors"] and all(e.startswith(f"$.events[{index}]") for e in item["errors"])
    assert rejected[5]["errors"][0].startswith("$.events[5].ts_utc: ")
    assert "RFC3339" in rejected[5]["errors"][0]
    assert "unknown event 'no_such_event'" in rejected[6]["errors"][0]
    assert "anon_village_id" in rejected[7]["errors"][0]
    assert rejected[8]["errors"][0].startswith("$.events[8].payload.dialogue_id: ")

    kept = {e.event_id for _, e in stored(r, settings)}
    assert kept == {uuid.UUID(g["event_id"]).hex for g in good}
    letters = dead_letters(r)
    assert sorted(rec["index"] for _, rec in letters) == sorted(bad)
    for _, rec in letters:
        assert rec["errors"] == rejected[rec["index"]]["errors"]
        assert rec["received"] > 0 and rec["reason"]
    reasons = {rec["index"]: rec["reason"] for _, rec in letters}
    assert reasons[6] == "unknown_event" and reasons[9] == "unknown_event"
    assert reasons[5] == "invalid"


def test_second_send_of_a_batch_is_answered_as_duplicates(env, r, settings, rng):
    events = [event(rng) for _ in range(20)]
    payload = json.dumps(batch(events))
    with client(env) as c:
        first = c.post(ROUTE, headers=HEADERS, content=payload).json()
        second = c.post(ROUTE, headers=HEADERS, content=payload).json()
    assert (first["accepted"], first["duplicates"]) == (20, 0)
    assert (second["accepted"], second["duplicates"]) == (0, 20)
    assert len(stored(r, settings)) == 20
    # the idempotency record: one set per shard and hour of the client's event time, 16-byte ids
    buckets = list(r.scan_iter("analytics:*:seen:*"))
    assert sum(r.scard(k) for k in buckets) == 20
    assert all(len(m) == 16 for k in buckets for m in r.smembers(k))
    assert all(settings.late_window_hours * 3600 <= r.ttl(k) <= settings.late_window_hours * 3600
               + settings.future_margin_seconds for k in buckets)


def test_dedup_is_exact_inside_a_batch_across_retries_and_over_many_hours(env, r, settings, rng):
    """The hour buckets: an id twice in one batch is stored once; a retry with a new sent_at (a
    different skew correction) meets its first send; a batch spanning 300 client hours (more
    buckets than one script call takes) is stored whole, and its resend is all duplicates."""
    start = now() - timedelta(hours=301)
    spread = [event(rng, ts_utc=iso(start + timedelta(hours=h, minutes=1))) for h in range(300)]
    twice = event(rng)
    with client(env, MAX_BATCH_SIZE="1000") as c:
        first = c.post(ROUTE, headers=HEADERS, json=batch([twice, dict(twice)])).json()
        assert (first["accepted"], first["duplicates"]) == (1, 1)
        skewed = batch([twice], sent_at=iso(now() + timedelta(minutes=3)))  # clock 3 min ahead
        assert c.post(ROUTE, headers=HEADERS, json=skewed).json()["duplicates"] == 1
        wide = c.post(ROUTE, headers=HEADERS, json=batch(spread)).json()
        assert (wide["accepted"], wide["duplicates"], wide["rejected"]) == (300, 0, [])
        again = c.post(ROUTE, headers=HEADERS, json=batch(spread)).json()
        assert (again["accepted"], again["duplicates"]) == (0, 300)
    assert len(stored(r, settings)) == 301
    hours = {k.rsplit(b":", 1)[1] for k in r.scan_iter("analytics:*:seen:*")}
    assert len(hours) >= 300


def test_sanitise_function_cuts_strings_arrays_and_drops_nulls_recursively():
    value = {"a": "x" * 5000, "b": None, "c": [None, 1] + list(range(300)),
             "d": {"e": {"f": None, "g": ["y" * 2000]}}}
    out = sanitize(value)
    assert out["a"] == "x" * MAX_STRING
    assert "b" not in out
    assert len(out["c"]) == MAX_ITEMS and None not in out["c"]
    assert out["d"] == {"e": {"g": ["y" * MAX_STRING]}}


def test_sanitisation_runs_before_validation(env, r, settings, rng):
    nulls = event(rng, "session_start", payload={"resumed": None}, client_ts=None)
    payload_null = event(rng, payload=None)
    allow_list = event(rng, "command_executed", payload={
        "command": "build.house", "email": "someone@example.com", "notes": ["x" * 1500] * 40,
    })
    long_token = event(rng, "dialogue_open", payload={"dialogue_id": "a" * 5000})
    big_env = {**env, "ANALYTICS_MAX_EVENT_SIZE": "100000"}
    with client(big_env) as c:
        resp = c.post(ROUTE, headers=HEADERS,
                      content=json.dumps(batch([nulls, payload_null, allow_list, long_token])))
    body = resp.json()
    assert body["accepted"] == 3, body
    assert [item["index"] for item in body["rejected"]] == [3]
    # cut to 1,000 characters, the id is still longer than the catalog's 64: refused, with the rule
    assert "payload.dialogue_id" in body["rejected"][0]["errors"][0]
    by_id = {e.event_id: e for _, e in stored(r, settings)}
    assert by_id[uuid.UUID(nulls["event_id"]).hex].payload == {"resumed": False}
    assert by_id[uuid.UUID(allow_list["event_id"]).hex].payload == {
        "command": "build.house", "success": True}


@pytest.mark.parametrize("name", ["dialogue_open", "command_executed"])
def test_free_form_text_is_refused(env, r, settings, rng, name):
    field = "dialogue_id" if name == "dialogue_open" else "command"
    ev = event(rng, name)
    ev["payload"][field] = "Hello, my name is Ada and I live at 1 Main St"
    with client(env) as c:
        body = c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([ev]))).json()
    assert body["accepted"] == 0 and body["rejected"][0]["errors"][0].startswith(
        f"$.events[0].payload.{field}: ")
    assert stored(r, settings) == []


def test_event_over_the_size_limit_is_rejected_with_the_reason(env, r, settings, rng):
    small = event(rng)
    padded = event(rng, payload={"kind": "heartbeat", "pad": "p" * 900})
    with client(env, ANALYTICS_MAX_EVENT_SIZE="600") as c:
        body = c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([small, padded]))).json()
    assert body["accepted"] == 1
    assert "over the 600-byte limit" in body["rejected"][0]["errors"][0]
    assert dead_letters(r)[0][1]["reason"] == "too_large"


def test_batch_over_max_batch_size_is_413_and_stores_nothing(env, r, settings, rng):
    with client(env, MAX_BATCH_SIZE="5") as c:
        ok = c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([event(rng) for _ in range(5)])))
        over = c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([event(rng) for _ in range(6)])))
    assert ok.status_code == 202
    assert_error(over, 413, "batch_too_large")
    assert len(stored(r, settings)) == 5


def test_body_cap_is_enforced_while_reading(env, r, settings, rng):
    payload = json.dumps(batch([event(rng) for _ in range(30)])).encode()
    with client(env, MAX_BODY_BYTES=str(len(payload) - 1)) as c:
        declared = c.post(ROUTE, headers=HEADERS, content=payload)

        def chunks():  # no Content-Length: the cap must hold on the stream itself
            for i in range(0, len(payload), 512):
                yield payload[i : i + 512]

        streamed = c.post(ROUTE, headers=HEADERS, content=chunks())
    assert_error(declared, 413, "body_too_large")
    assert_error(streamed, 413, "body_too_large")
    assert r.dbsize() == 0 or stored(r, settings) == []


def test_gzip_bodies_are_accepted_and_bombs_refused(env, r, settings, rng):
    events = [event(rng) for _ in range(50)]
    zipped = gzip.compress(json.dumps(batch(events)).encode())
    bomb = gzip.compress(b'{"events": [' + b" " * (20 * 1024 * 1024) + b"]}")
    gz = {**HEADERS, "Content-Encoding": "gzip"}
    with client(env, MAX_BODY_BYTES=str(1024 * 1024)) as c:
        ok = c.post(ROUTE, headers=gz, content=zipped)
        boom = c.post(ROUTE, headers=gz, content=bomb)
        broken = c.post(ROUTE, headers=gz, content=zipped[:-20])
        garbage = c.post(ROUTE, headers=gz, content=b"not gzip at all")
        brotli = c.post(ROUTE, headers={**HEADERS, "Content-Encoding": "br"}, content=b"x")
    assert len(bomb) < 1024 * 1024  # the compressed bomb itself passes the body cap
    assert ok.status_code == 202 and ok.json()["accepted"] == 50
    assert_error(boom, 413, "body_too_large")
    assert_error(broken, 400)
    assert_error(garbage, 400)
    assert_error(brotli, 415)
    assert len(stored(r, settings)) == 50


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"{not json", "application/json"),
        (b"[1, 2, 3]", "application/json"),
        (b'{"events": "nope"}', "application/json"),
        (b'{"events": [], "sent_at": "soon"}', "application/json"),
        (b'{"events": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", "application/json"),
        (b"\xff\xfe\x00garbage", "application/json"),
    ],
)
def test_malformed_bodies_are_400(env, r, body, ctype):
    with client(env) as c:
        resp = c.post(ROUTE, headers={**HEADERS, "Content-Type": ctype}, content=body)
    assert_error(resp, 400, "malformed")


def test_nested_events_are_rejected_not_crashed(env, r, settings, rng):
    nested = event(rng, payload=None)  # the null sends it through sanitisation
    nested["extra"] = json.loads("[" * 60 + '"deep"' + "]" * 60)
    fine = event(rng)
    with client(env, ANALYTICS_MAX_EVENT_SIZE="100000") as c:
        resp = c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([nested, fine])))
    assert resp.status_code == 202, resp.text
    assert resp.json()["accepted"] == 1
    assert resp.json()["rejected"][0]["errors"] == ["$.events[0]: nested too deeply"]


@pytest.mark.parametrize("ctype", ["text/plain", "", "application/x-www-form-urlencoded"])
def test_wrong_content_type_is_415(env, r, rng, ctype):
    with client(env) as c:
        resp = c.post(ROUTE, headers={**HEADERS, "Content-Type": ctype},
                      content=json.dumps(batch([event(rng)])))
    assert_error(resp, 415, "unsupported_media_type")


def test_auth_write_key_basic_and_jwt(env, r, settings, rng):
    basic = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    staff = tokens.issue(JWT_SECRET, "staff")
    ctype = {"Content-Type": "application/json"}
    send = lambda c, h: c.post(ROUTE, headers={**ctype, **h},  # noqa: E731
                               content=json.dumps(batch([event(rng)])))
    with client(env) as c:
        assert send(c, {"X-Write-Key": WRITE_KEY}).status_code == 202
        assert send(c, {"Authorization": f"Basic {basic}"}).status_code == 202
        assert send(c, {"Authorization": f"Bearer {staff}"}).status_code == 202
        for headers in (
            {},
            {"X-Write-Key": WRITE_KEY + "x"},
            {"Authorization": "Basic " + base64.b64encode(b"nope:").decode()},
            {"Authorization": "Basic %%%"},
            {"Authorization": "Bearer " + tokens.issue("another-secret-of-32-bytes-length!", "staff")},
            {"Authorization": "Bearer not.a.jwt"},
        ):
            assert_error(send(c, headers), 401, "unauthorized")
    assert len(stored(r, settings)) == 3


def test_skew_correction_keeps_the_original_time(env, r, settings, rng):
    ahead = now() + timedelta(hours=3)  # the client's clock is three hours fast
    ev = event(rng, ts_utc=iso(ahead - timedelta(minutes=10)))
    sent_at = iso(ahead)
    with client(env) as c:
        body = c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([ev], sent_at=sent_at))).json()
    assert body["accepted"] == 1, body
    [(_, e)] = stored(r, settings)
    sent_ms = to_ms(msgspec.json.decode(json.dumps(sent_at).encode(), type=datetime))
    assert e.ts_original == to_ms(msgspec.convert(ev["ts_utc"], datetime))
    # Segment's formula, exactly: ts = received - (sent_at - ts_utc)
    assert e.ts == e.received - (sent_ms - e.ts_original)


def test_future_events_are_refused_after_correction(env, r, settings, rng):
    future = event(rng, ts_utc=iso(now() + timedelta(hours=2)))
    corrected = event(rng, ts_utc=iso(now() + timedelta(hours=2)))
    with client(env) as c:
        honest = c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([future]))).json()
        fast = c.post(ROUTE, headers=HEADERS, content=json.dumps(
            batch([corrected], sent_at=iso(now() + timedelta(hours=2))))).json()
    assert honest["accepted"] == 0 and "in the future" in honest["rejected"][0]["errors"][0]
    assert fast["accepted"] == 1
    assert [rec["reason"] for _, rec in dead_letters(r)] == ["future"]


def test_every_response_carries_the_server_time(env, r, rng):
    with client(env) as c:
        before = int(time.time() * 1000)
        responses = [
            c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([event(rng)]))),
            c.post(ROUTE, headers={}, content=b"{}"),
            c.get("/healthz"),
            c.get("/no-such-route"),
        ]
        after = int(time.time() * 1000)
    for resp in responses:
        assert before <= int(resp.headers["x-server-time"]) <= after


@pytest.mark.parametrize(
    "over", [{"X-Analytics-Opt-Out": "1"}, {"DNT": "1"}, {"ENV:ANALYTICS_ENABLED": "false"}]
)
def test_opt_out_stores_nothing_and_logs_nothing(env, r, rng, caplog, over):
    caplog.set_level(logging.DEBUG)
    settings_env = {k[4:]: v for k, v in over.items() if k.startswith("ENV:")}
    headers = {**HEADERS, **{k: v for k, v in over.items() if not k.startswith("ENV:")}}
    ev = event(rng, anon_village_id="opted-out-village-7f3a")
    with client(env, **settings_env) as c:
        metrics_before = c.get("/metrics").text
        resp = c.post(ROUTE, headers=headers, content=json.dumps(batch([ev])))
        bad = c.post(ROUTE, headers={k: v for k, v in headers.items() if k != "X-Write-Key"},
                     content=b"not even json")
        metrics_after = c.get("/metrics").text
    assert resp.status_code == 204 and resp.content == b""
    assert bad.status_code == 204
    # not a marker, not a rate-limit counter, not a salt: only the anonymous tally of opt-outs
    # that the privacy report shows (issue 14), which names no one
    assert r.keys("*") == [keyspace.OPT_OUTS.encode()]
    assert sum(int(v) for v in r.hgetall(keyspace.OPT_OUTS).values()) == 2
    assert metric(metrics_after, "collector_opt_outs_total") - metric(
        metrics_before, "collector_opt_outs_total") == 2
    assert "opted-out-village-7f3a" not in caplog.text


def test_logs_carry_no_payload_or_identifier(env, r, rng, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "village-secret-zz91"
    events = [event(rng, anon_village_id=secret),
              event(rng, anon_village_id=secret, ts_utc="garbage-time"),
              event(rng, "dialogue_open", anon_village_id=secret, payload={"dialogue_id": "secret words"})]
    with client(env) as c:
        c.post(ROUTE, headers=HEADERS, content=json.dumps(batch(events)))
        c.post(ROUTE, headers=HEADERS, content=b'{"events": [' + secret.encode())
    text = caplog.text + " ".join(str(rec.args) for rec in caplog.records)
    assert secret not in text and "secret words" not in text
    assert events[0]["event_id"] not in text


def test_store_failure_is_503_with_retry_after(env, r, rng):
    with client(env, BACKPRESSURE_MEMORY_PERCENT="1000000000") as c:
        r.config_set("maxmemory", "1")
        try:
            resp = c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([event(rng)])))
        finally:
            r.config_set("maxmemory", "0")
        after = c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([event(rng)])))
    assert_error(resp, 503, "store_unavailable")
    assert int(resp.headers["retry-after"]) >= 1
    assert after.status_code == 202


def test_metrics_count_accepted_rejected_by_reason_duplicates_and_batches(env, r, rng):
    events = [event(rng) for _ in range(7)]
    bad = [event(rng, ts_utc="x"), event(rng, "nope"), event(rng, ts_utc=iso(now() + timedelta(days=1)))]
    with client(env) as c:
        before = c.get("/metrics").text
        c.post(ROUTE, headers=HEADERS, content=json.dumps(batch(events + bad)))
        c.post(ROUTE, headers=HEADERS, content=json.dumps(batch(events[:3])))
        after = c.get("/metrics").text

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("collector_events_accepted_total") == 7
    assert delta("collector_events_duplicate_total") == 3
    assert delta("collector_events_rejected_total", reason="invalid") == 1
    assert delta("collector_events_rejected_total", reason="unknown_event") == 1
    assert delta("collector_events_rejected_total", reason="future") == 1
    assert delta("collector_batch_events_count") == 2
    assert delta("collector_batch_events_sum") == 13
    assert delta("collector_request_seconds_count", route=ROUTE, status="2xx") == 2
    assert "collector_redis_errors_total" in after


def test_openapi_describes_every_route_and_body(env, r):
    with client(env) as c:
        doc = c.get("/openapi.json").json()
        routes = [route for route in c.app.routes if hasattr(route, "methods")]
    assert doc["openapi"].startswith("3.")
    for route in routes:
        for method in route.methods - {"HEAD"}:
            assert method.lower() in doc["paths"][route.path], route.path
    op = doc["paths"][ROUTE]["post"]
    assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/Batch")
    assert {"202", "204", *map(str, ERROR_STATUSES)} <= set(op["responses"])
    schemas = doc["components"]["schemas"]
    refs = {item["$ref"].rsplit("/", 1)[1] for item in schemas["Batch"]["properties"]["events"]["items"]["oneOf"]}
    assert refs == {"VillageActive", "SessionStart", "SessionEnd", "DialogueOpen", "CommandExecuted"}
    assert refs <= set(schemas)
