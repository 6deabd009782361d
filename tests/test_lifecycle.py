"""Issue 14 against the running services: a person listed then erased everywhere, the purge's dry
run and real run (the archive read back with pyarrow and DuckDB, a crash between archive and
delete duplicating nothing), and retention changed at run time reaching the workers."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pyarrow.dataset as ds
import redis

from aggregator import places, purge
from aggregator.archive import Archive
from infra import tokens
from schemas import keyspace
from schemas.catalog import STORED_ENCODER, STORED_LIST_DECODER, compact
from schemas.days import DAY_MS, day_of_ms, day_start_ms
from schemas.settings import Settings
from scripts.simulate import batch, event
from tests import services
from tests.conftest import JWT_SECRET, WRITE_KEY
from tests.kpi_helpers import ms
from tests.streamfeed import entry_fields, stored

HOUR = 3_600_000
BIN = Path(sys.executable).parent
ADMIN = {"Authorization": "Bearer " + tokens.issue(JWT_SECRET, "admin", "dpo-officer")}
STAFF = {"Authorization": "Bearer " + tokens.issue(JWT_SECRET, "staff", "analyst")}


def make(who: str, ts: int, rng: random.Random) -> dict[str, Any]:
    name = rng.choice(["village_active", "dialogue_open", "command_executed"])
    return event(name, who, ts, None, {"dialogue_id": "elder", "command": "build"}, rng)


def hex_id(ev: dict[str, Any]) -> str:
    return uuid.UUID(ev["event_id"]).hex


def send(url: str, events: list[dict[str, Any]], headers: dict[str, str], path: str) -> None:
    with httpx.Client(base_url=url, timeout=30) as c:
        for i in range(0, len(events), 40):
            resp = c.post(path, json=batch(events[i:i + 40]), headers=headers)
            assert resp.status_code == 202, resp.text


def cli(env: dict[str, str], *args: str) -> dict[str, Any]:
    out = subprocess.run([str(BIN / args[0]), *args[1:]], env={**os.environ, **env},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def redis_dump(r: redis.Redis) -> dict[bytes, Any]:
    """Every key with its whole value (streams as entries), to compare and to search."""
    out: dict[bytes, Any] = {}
    for key in r.scan_iter(count=1000):
        kind = r.type(key)
        if kind == b"string":
            out[key] = r.get(key)
        elif kind == b"hash":
            out[key] = sorted(r.hgetall(key).items())
        elif kind == b"list":
            out[key] = r.lrange(key, 0, -1)
        elif kind == b"set":
            out[key] = sorted(r.smembers(key))
        elif kind == b"zset":
            out[key] = r.zrange(key, 0, -1, withscores=True)
        elif kind == b"stream":
            out[key] = r.xrange(key)
    return out


def archive_rows(root: str, table: str = "events") -> list[dict[str, Any]]:
    base = Path(root) / table
    if not base.exists():
        return []
    return ds.dataset(str(base), format="parquet", partitioning="hive").to_table().to_pylist()


def stream_events(r: redis.Redis, settings: Settings, kind: str = "events") -> dict[str, Any]:
    out = {}
    for place in places.streams(settings):
        if place.kind == kind:
            for e in places.entries(r, place):
                for ev in e.events or ():
                    out[ev.event_id] = ev
    return out


def counters(r: redis.Redis) -> dict[bytes, Any]:
    return {k: sorted(r.hgetall(k).items()) for k in r.scan_iter(match="analytics:*:counts:*")}


def test_a_person_is_listed_then_erased_everywhere_and_others_stay(
    env: dict[str, str], r: redis.Redis, rng: random.Random
) -> None:
    env = {**env, "DEBUG_BUFFER_SIZE": "500"}  # the debug view shows every live event
    settings = Settings.from_env(env)
    now = int(time.time() * 1000)
    alice, bob = "alice-7f3a", "bob-91c2"
    people = [alice, bob] + [f"filler-{i}" for i in range(8)]
    on_time = [make(p, now - rng.randint(1, 40) * HOUR, rng) for p in people for _ in range(12)]
    late = [make(p, now - rng.randint(60, 90) * HOUR, rng) for p in people[:4] for _ in range(5)]
    history = [make(p, now - rng.randint(10 * 24, 12 * 24) * HOUR, rng) for p in people[:4] for _ in range(6)]
    bad = [{**make(p, now - HOUR, rng), "platform": "NOT A PLATFORM!"} for p in people[:3]]
    # signed in as a user on another device: the envelope's user_id names her too
    signed_in = [{**make("filler-3", now - rng.randint(1, 30) * HOUR, rng), "user_id": alice}
                 for _ in range(5)]
    live = on_time + late + bad + signed_in
    rng.shuffle(live)  # batches mix people: entries keep others' events when Alice's go

    collector, kpi = services.collector(env), services.kpi_api(env)
    worker = services.aggregator(env, "lifecycle-1")
    try:
        send(collector.url, history, ADMIN, "/internal/analytics/import")
        services.wait_drained(r, settings)
        archived = cli(env, "analytics-purge", "--older-than-days", "5")
        assert archived["archived"] == len(history)  # Alice's history now rests in the archive
        send(collector.url, live, {"X-Write-Key": WRITE_KEY}, "/api/analytics/events")
        services.wait_drained(r, settings)
        before_counts = counters(r)
        # the debug buffer an older version kept beside the streams (a copy of the newest events):
        # no longer written, but erasure still cleans it until it expires
        for shard in range(settings.stream_shards):
            bodies = [STORED_ENCODER.encode(compact(ev)) for _, fields in r.xrange(keyspace.stream(shard))
                      for ev in STORED_LIST_DECODER.decode(fields[keyspace.ENTRY_EVENTS_B])]
            r.lpush(keyspace.recent(shard), *bodies[-settings.debug_buffer_size:])
            r.expire(keyspace.recent(shard), settings.debug_buffer_ttl_seconds)

        def recent_view() -> str:  # the collector's view of the newest stored events
            with httpx.Client(base_url=collector.url, timeout=30) as c:
                resp = c.get("/internal/analytics/debug/recent-events", headers=ADMIN)
                assert resp.status_code == 200, resp.text
                return json.dumps(resp.json()["events"])

        with httpx.Client(base_url=kpi.url, timeout=60) as api:
            for method, path in [("GET", f"/internal/analytics/users/{alice}/events"),
                                 ("DELETE", f"/internal/analytics/users/{alice}"),
                                 ("GET", "/internal/analytics/erasures")]:
                denied = api.request(method, path, headers=STAFF)
                assert denied.status_code == 403 and denied.json()["error"] == "forbidden", path

            listed = api.get(f"/internal/analytics/users/{alice}/events", headers=ADMIN).json()
            def hers(ev: dict[str, Any]) -> bool:
                return alice in (ev["anon_village_id"], ev.get("user_id"))

            sent = [ev for ev in history + live if hers(ev)]
            assert listed["user_id"] == alice and listed["count"] == len(sent)
            assert {ev["event_id"] for ev in listed["events"]} == {hex_id(ev) for ev in sent}
            places_seen = {p.split(":")[0] for ev in listed["events"] for p in ev["places"]}
            assert places_seen == {"events", "late", "recent", "archive", "rejections"}
            pseudonyms = listed["pseudonyms"]
            assert pseudonyms and alice not in json.dumps(listed["events"])  # only the echo names her
            # a day range narrows the listing to the events of those days
            first = day_of_ms(now - 40 * HOUR)
            ranged = api.get(f"/internal/analytics/users/{alice}/events?start={first}",
                             headers=ADMIN).json()
            assert ranged["count"] == sum(1 for ev in sent if day_of_ms(ms(ev["ts_utc"])) >= first)
            bob_before = api.get(f"/internal/analytics/users/{bob}/events", headers=ADMIN).json()
            assert bob_before["count"] == sum(ev["anon_village_id"] == bob for ev in history + live)

            # the scans below find them while they are there
            assert all(p.encode() in repr(redis_dump(r)).encode() for p in pseudonyms)
            assert any(p in recent_view() for p in pseudonyms)
            assert any(p in repr(archive_rows(env["ANALYTICS_ARCHIVE_URL"])) for p in pseudonyms)

            gone = api.delete(f"/internal/analytics/users/{alice}", headers=ADMIN)
            assert gone.status_code == 200, gone.text
            removed = gone.json()["removed"]
            mine = {name: [ev for ev in evs if hers(ev)]
                    for name, evs in [("history", history), ("on_time", on_time + signed_in),
                                      ("late", late), ("bad", bad)]}
            assert removed["archive"] == len(mine["history"])
            assert removed["events"] == len(mine["on_time"]) + len(mine["late"])
            assert removed["late"] == len(mine["late"]) and removed["rejections"] == len(mine["bad"])
            assert removed["recent"] > 0 and "aggregates" in gone.json()
            services.wait_drained(r, settings)  # replaced entries acknowledged, not applied again

            # no pseudonym of Alice's in any Redis key or value, nor in any archive row
            dump = repr(redis_dump(r)).encode()
            assert not [p for p in pseudonyms if p.encode() in dump]
            assert not [p for p in pseudonyms if p in recent_view()]
            rows = archive_rows(env["ANALYTICS_ARCHIVE_URL"]) + archive_rows(
                env["ANALYTICS_ARCHIVE_URL"], "rejections")
            assert rows and not [p for p in pseudonyms if p in repr(rows)]
            again = api.get(f"/internal/analytics/users/{alice}/events", headers=ADMIN).json()
            assert again["count"] == 0

            # Bob, and every aggregate, untouched
            bob_after = api.get(f"/internal/analytics/users/{bob}/events", headers=ADMIN).json()
            assert bob_after["count"] == bob_before["count"]
            assert {e["event_id"] for e in bob_after["events"]} == {e["event_id"] for e in bob_before["events"]}
            assert counters(r) == before_counts

            audit = api.get("/internal/analytics/erasures", headers=ADMIN).json()["erasures"]
            assert len(audit) == 1 and audit[0]["requested_by"] == "dpo-officer"
            assert audit[0]["removed"] == removed and alice not in json.dumps(audit)
            assert len(audit[0]["subject_hash"]) == 32

        # the operators' command: Bob, with the same audit
        erased = cli(env, "analytics-erase", bob, "--requested-by", "ops-ticket-12")
        assert erased["total"] >= bob_before["count"]
        assert not [e for e in stream_events(r, settings).values() if e.village in bob_after["pseudonyms"]]
    finally:
        for svc in (worker, kpi, collector):
            svc.stop()


def test_purge_dry_run_changes_nothing_then_archives_exactly_the_old_events(
    env: dict[str, str], r: redis.Redis, rng: random.Random
) -> None:
    env = {**env, "METRICS_RETENTION_DAYS": "9"}
    settings = Settings.from_env(env)
    today = date.fromtimestamp(time.time())
    ages = [12, 10, 8, 3, 0]
    sent: list[dict[str, Any]] = []
    for age in ages:
        noon = day_start_ms(today - timedelta(days=age)) + 12 * HOUR
        # today's: at most now - 1 h after the +-3 h spread below (the future margin is 300 s)
        stamp = min(noon, int(time.time() * 1000) - 4 * HOUR) if age == 0 else noon
        sent += [make(f"v-{i % 7}", stamp + rng.randint(-3, 3) * HOUR, rng) for i in range(40)]
    cutoff = (today - timedelta(days=7)).isoformat()
    old = [ev for ev in sent if day_of_ms(ms(ev["ts_utc"])) < cutoff]
    young = [ev for ev in sent if day_of_ms(ms(ev["ts_utc"])) >= cutoff]
    old_days = Counter(day_of_ms(ms(ev["ts_utc"])) for ev in old)

    collector, worker = services.collector(env), services.aggregator(env, "purge-1")
    try:
        send(collector.url, sent, ADMIN, "/internal/analytics/import")
        services.wait_drained(r, settings)
    finally:
        worker.stop()
        collector.stop()

    snapshot = redis_dump(r)
    dry = cli(env, "analytics-purge", "--older-than-days", "7", "--dry-run")
    assert dry["dry_run"] and dry["total"] == len(old)
    assert dry["streams"] == {"events": dict(old_days)}
    assert redis_dump(r) == snapshot
    root = Path(env["ANALYTICS_ARCHIVE_URL"])
    assert not list(root.rglob("*.parquet"))

    # a crash between writing the archive and deleting from the streams: the rerun must not
    # archive those events twice
    archive = Archive(str(root))
    for place in purge._places(settings):
        for taken in purge._take_entries(r, place, lambda day: day < cutoff):
            purge._archive(archive, taken)
    assert len(archive_rows(str(root))) == len(old)

    done = cli(env, "analytics-purge", "--older-than-days", "7")
    assert done["total"] == done["archived"] == len(old)
    rows = archive_rows(str(root))
    assert sorted(row["event_id"] for row in rows) == sorted(hex_id(ev) for ev in old)
    by_id = {hex_id(ev): ev for ev in old}
    for row in rows:
        ev = by_id[row["event_id"]]
        assert int(row["ts"].timestamp() * 1000) == ms(ev["ts_utc"]) and row["name"] == ev["event_name"]
        assert row["date"] == day_of_ms(ms(ev["ts_utc"]))  # the Hive partition is the event's day
        assert ev["anon_village_id"] not in repr(row)  # pseudonymised as stored
    per_day = duckdb.sql(
        f"SELECT CAST(date AS VARCHAR) AS d, count(*) AS n FROM "
        f"read_parquet('{root}/events/*/*.parquet', hive_partitioning = true) GROUP BY d"
    ).fetchall()
    assert dict(per_day) == dict(old_days)
    assert set(stream_events(r, settings)) == {hex_id(ev) for ev in young}

    # aggregates past METRICS_RETENTION_DAYS (9) went, younger ones stayed
    days_kept = {k.decode().rsplit(":", 1)[1] for k in counters(r)}
    metrics_cutoff = (today - timedelta(days=9)).isoformat()
    assert days_kept == {day_of_ms(ms(ev["ts_utc"])) for ev in sent} - {
        d for d in old_days if d < metrics_cutoff}
    assert done["aggregates"]["keys"] > 0

    # a second run finds nothing; archive partitions past ARCHIVE_RETENTION_DAYS go
    again = cli({**env, "ARCHIVE_RETENTION_DAYS": "11"}, "analytics-purge", "--older-than-days", "7")
    assert again["total"] == 0
    assert again["archive"]["partitions_deleted"] == sorted(d for d in old_days if d < (today - timedelta(days=11)).isoformat())
    assert {row["date"] for row in archive_rows(str(root))} == {
        d for d in old_days if d >= (today - timedelta(days=11)).isoformat()}


def test_retention_changed_at_run_time_reaches_the_workers_and_the_privacy_report(
    env: dict[str, str], r: redis.Redis, rng: random.Random
) -> None:
    env = {**env, "MAINTENANCE_SECONDS": "1"}
    settings = Settings.from_env(env)
    now = int(time.time() * 1000)
    arrived = now - 3 * DAY_MS  # entries that reached the stream three days ago
    old = [stored("village_active", f"pv-{i}", arrived - i) for i in range(30)]
    for shard in range(settings.stream_shards):
        r.xgroup_create(keyspace.stream(shard), settings.consumer_group, id="0", mkstream=True)
    for i in range(0, len(old), 10):
        part = old[i:i + 10]
        r.xadd(keyspace.stream(0), entry_fields(part),
               id=f"{arrived + i}-0")

    # a rejection the collector filed three days ago (a client's odd types in it)
    rejection = {"index": 0, "event_id": "not-a-uuid", "event_name": ["x"], "event_version": "1",
                 "errors": ["$.platform: bad"], "received": arrived, "reason": "invalid",
                 "event": {"anon_village_id": "pseudo:0123abcd", "platform": "<redacted 4 chars>"}}
    r.xadd(keyspace.DEAD_LETTER, {keyspace.ENTRY_REASON: json.dumps(rejection)}, id=f"{arrived}-0")
    collector, kpi = services.collector(env), services.kpi_api(env)
    worker = services.aggregator(env, "retention-1")
    try:
        services.wait_drained(r, settings)
        time.sleep(2.5)  # maintenance ran: 90 days' retention keeps them
        assert r.xlen(keyspace.stream(0)) == 3
        with httpx.Client(base_url=kpi.url, timeout=30) as api:
            denied = api.patch("/internal/analytics/settings", json={"analytics_retention_days": 2},
                               headers=STAFF)
            assert denied.status_code == 403
            bad = api.patch("/internal/analytics/settings", json={"analytics_retention_days": 0},
                            headers=ADMIN)
            assert bad.status_code == 400 and "from 1 to 3660" in bad.json()["detail"]
            resp = api.patch("/internal/analytics/settings",
                             json={"analytics_retention_days": 2, "metrics_retention_days": 3},
                             headers=ADMIN)
            assert resp.status_code == 200, resp.text
            report = api.get("/internal/analytics/privacy-report", headers=STAFF).json()
            assert report["retention"]["analytics_retention_days"] == 2
            assert report["retention"]["metrics_retention_days"] == 3
            fields = report["events"]["village_active.v1"]
            assert fields["anon_village_id"].startswith("pseudonymised")
            assert fields["payload.kind"].startswith("allow-listed")
            assert report["profile"] == settings.analytics_profile

            # the worker archives and removes the three-day-old entries without a restart
            deadline = time.monotonic() + 30
            while r.xlen(keyspace.stream(0)) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert r.xlen(keyspace.stream(0)) == 0
            rows = archive_rows(env["ANALYTICS_ARCHIVE_URL"])
            assert sorted(row["event_id"] for row in rows) == sorted(ev.event_id for ev in old)
            assert r.xlen(keyspace.DEAD_LETTER) == 0
            [filed] = archive_rows(env["ANALYTICS_ARCHIVE_URL"], "rejections")
            assert filed["reason"] == "invalid" and filed["event_version"] is None
            assert json.loads(filed["event"]) == rejection["event"]

            # and new aggregates get the new metrics retention as their TTL
            fresh = make("ttl-village", now - HOUR, rng)
            send(collector.url, [fresh], {"X-Write-Key": WRITE_KEY}, "/api/analytics/events")
            with httpx.Client(base_url=collector.url) as c:
                assert c.post("/api/analytics/events", json=batch([fresh]),
                              headers={"X-Write-Key": WRITE_KEY, "DNT": "1"}).status_code == 204
            services.wait_drained(r, settings)
            day = day_of_ms(ms(fresh["ts_utc"]))
            ttls = [r.ttl(k) for k in r.scan_iter(match=f"analytics:*:counts:{day}")]
            assert ttls and all(2 * 86400 < t <= 3 * 86400 for t in ttls), ttls

            report = api.get("/internal/analytics/privacy-report", headers=STAFF).json()
            assert report["opt_outs"]["total"] == 1 and report["opt_outs"]["dnt"] == 1
            assert report["at_rest"]["archive_rows"]["events"] == len(old)
            # the debug view keeps no copy of the events it shows (older versions kept one a shard)
            assert report["at_rest"]["debug_buffer_events"] == 0
            assert report["salt_epochs"] and report["salt_epochs"][0]["deleted_on_day"]
            page = api.get("/dashboard/privacy")
            assert page.status_code == 200 and "privacy.js" in page.text
            assert api.get("/dashboard/assets/privacy.js").status_code == 200
    finally:
        for svc in (worker, kpi, collector):
            svc.stop()


def test_every_actor_field_of_the_envelope_is_declared_a_subject_field() -> None:
    """Listing and erasure find a person through catalog.SUBJECT_FIELDS: an actor id added to the
    envelope (typed ActorId) without a declaration there would escape them."""
    from schemas.catalog import SUBJECT_FIELDS, ActorId, Event, StoredEvent

    actor_fields = {name for name, hint in Event.__annotations__.items() if "ActorId" in str(hint)}
    assert ActorId and actor_fields and actor_fields == set(SUBJECT_FIELDS)
    assert set(SUBJECT_FIELDS.values()) <= set(StoredEvent.__struct_fields__)


def test_a_person_named_in_a_hashed_payload_field_is_found_and_erased(
    env: dict[str, str], r: redis.Redis, rng: random.Random
) -> None:
    """Seed 002 hashes worker_id (an identifier in the payload) like the envelope's ids: erasing
    that worker takes their job applications; the privacy report says which fields are coarsened."""
    env = {**env, "ANALYTICS_PROFILE": "seed002"}
    settings = Settings.from_env(env)
    now = int(time.time() * 1000)

    def job(actor: str, worker: str) -> dict[str, Any]:
        return event("job_apply", actor, now - rng.randint(1, 20) * HOUR, None,
                     {"job_id": f"job-{rng.randrange(99)}", "worker_id": worker}, rng)

    theirs = [job(f"client-{i}", "worker-zed") for i in range(6)]
    others = [job(f"client-{i}", "worker-amy") for i in range(6)]
    collector, kpi = services.collector(env), services.kpi_api(env)
    worker = services.aggregator(env, "seed002-1")
    try:
        send(collector.url, theirs + others, {"X-Write-Key": WRITE_KEY}, "/api/analytics/events")
        services.wait_drained(r, settings)
        with httpx.Client(base_url=kpi.url, timeout=60) as api:
            listed = api.get("/internal/analytics/users/worker-zed/events", headers=ADMIN).json()
            assert {e["event_id"] for e in listed["events"]} == {hex_id(ev) for ev in theirs}
            assert api.delete("/internal/analytics/users/worker-zed", headers=ADMIN).json()["removed"]["events"] == 6
            assert not [p for p in listed["pseudonyms"] if p.encode() in repr(redis_dump(r)).encode()]
            assert {e.event_id for e in stream_events(r, settings).values()} == {hex_id(ev) for ev in others}
            report = api.get("/internal/analytics/privacy-report", headers=STAFF).json()
            assert report["events"]["emergency_request.v1"]["payload.latitude"].startswith("coarsened")
            assert report["events"]["job_apply.v1"]["payload.worker_id"].startswith("hashed")
            assert report["events"]["job_apply.v1"]["user_id"].startswith("pseudonymised")
    finally:
        for svc in (worker, kpi, collector):
            svc.stop()


def test_privacy_report_page_in_chromium(env: dict[str, str], r: redis.Redis) -> None:
    """The dashboard's privacy page shows the report the API answers (retention, fields)."""
    from tests.test_dashboard import dashboard_page, wait_state

    r.hset(keyspace.ADJUSTED_SETTINGS, "analytics_retention_days", 21)
    with dashboard_page(env) as (page, errors, url):
        token = tokens.issue(JWT_SECRET, "staff", "browser-test")
        page.goto(f"{url}/dashboard/privacy#token={token}")
        assert wait_state(page, "ready|error").startswith("ready")
        retention = page.inner_text("#retention")
        assert "analytics_retention_days\t21" in retention, retention
        fields = page.inner_text("#events")
        assert "anon_village_id" in fields and "pseudonymised" in fields
        assert errors == []


def test_erasure_keeps_others_events_counted_exactly_once_whatever_the_entry_state(
    r: redis.Redis, settings: Settings, rng: random.Random
) -> None:
    """Three entries mixing two people: one already applied, one pending to a slow consumer that
    applies its copy after the erasure, one not delivered yet. After Alice's erasure and the workers' run, Bob's events
    are each counted once and Alice's only where they were applied before she was erased."""
    from aggregator.erase import erase
    from aggregator.worker import Worker, ensure_groups
    from collector.privacy import Pseudonymizer
    from tests.streamfeed import count, read_as

    now = int(time.time() * 1000)
    salt = os.urandom(32)
    period = settings.salt_rotation_days * DAY_MS
    r.set(keyspace.salt(now // period), salt)
    alice, bob = (Pseudonymizer.digest(salt, who) for who in ("alice", "bob"))
    ts = now - HOUR
    ensure_groups(r, settings)

    def entry() -> list[Any]:
        evs = [stored("village_active", rng.choice([alice, bob]), ts) for _ in range(12)]
        evs += [stored("village_active", alice, ts), stored("village_active", bob, ts)]
        rng.shuffle(evs)
        r.xadd(keyspace.stream(0), entry_fields(evs))
        return evs

    applied = entry()
    Worker(r, settings, consumer="w1").run(burst=True)
    pending = entry()
    taken = read_as(r, settings, "ghost")  # a slow worker holds it, and applies it after the erasure
    assert len(taken) == 1 and len(taken[0][1]) == 1
    waiting = entry()

    report = erase(r, settings, None, "alice", "test")
    want_removed = sum(ev.village == alice for ev in applied + pending + waiting)
    assert report["removed"]["events"] == want_removed
    Worker(r, settings, consumer="ghost").process(*taken[0])  # its copy still holds Alice's events
    Worker(r, settings, consumer="w2").run(burst=True)

    day = day_of_ms(ts)
    expected = sum(ev.village == bob for ev in applied + pending + waiting) + sum(
        ev.village == alice for ev in applied)
    assert count(r, settings, "village_active", day) == expected
    left = stream_events(r, settings)
    assert all(ev.village == bob for ev in left.values())
    assert len(left) == sum(ev.village == bob for ev in applied + pending + waiting)
    assert services.pending_total(r, settings) == 0


def test_a_person_who_came_in_through_the_seed_and_segment_routes_is_listed_and_erased(
    env: dict[str, str], r: redis.Redis
) -> None:
    """Erasure reaches what the newer routes store: seed 002's route (anonymous id in the header,
    the user as a bearer token's sub) and Segment's /v1/batch (userId and anonymousId), under
    seed 002's profile. The person's events go; another person's stay."""
    env = {**env, "ANALYTICS_PROFILE": "seed002"}
    settings = Settings.from_env(env)
    key = {"X-Write-Key": WRITE_KEY}
    as_user = {**key, "Authorization": "Bearer " + tokens.issue(JWT_SECRET, "staff", "user-erin")}

    def segment_batch(ids: dict[str, str], n: int) -> dict[str, Any]:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return {"batch": [{"type": "page", "name": "Jobs", "messageId": str(uuid.uuid4()),
                           "timestamp": now, "properties": {"path": "/jobs"}, **ids}
                          for _ in range(n)], "sentAt": now}

    collector, kpi = services.collector(env), services.kpi_api(env)
    worker = services.aggregator(env, "erase-routes")
    try:
        with httpx.Client(base_url=collector.url, timeout=30) as c:
            for headers, anon in ((as_user, "anon-erin"), (key, "anon-other")):
                resp = c.post("/api/v1/analytics/events/", headers={**headers, "X-Client-ANON-ID": anon},
                              json={"events": [{"event_type": "page_view", "source": "web",
                                                "payload": {"page": "jobs"}}] * 3})
                assert resp.status_code == 201, resp.text
            for ids in ({"userId": "user-erin"}, {"anonymousId": "anon-erin"}, {"userId": "user-other"}):
                resp = c.post("/v1/batch", auth=(WRITE_KEY, ""), json=segment_batch(ids, 2))
                assert resp.status_code == 200 and resp.json() == {"success": True}, resp.text
        services.wait_drained(r, settings)
        before = set(stream_events(r, settings))
        with httpx.Client(base_url=kpi.url, timeout=60) as api:
            erin = api.get("/internal/analytics/users/user-erin/events", headers=ADMIN).json()
            anon = api.get("/internal/analytics/users/anon-erin/events", headers=ADMIN).json()
            assert erin["count"] == 3 + 2 and anon["count"] == 3 + 2  # the route's three carry both
            assert erin["pseudonyms"] and anon["pseudonyms"]
            gone = {e["event_id"] for e in erin["events"]} | {e["event_id"] for e in anon["events"]}
            assert len(gone) == 3 + 2 + 2
            for who in ("user-erin", "anon-erin"):
                assert api.delete(f"/internal/analytics/users/{who}", headers=ADMIN).status_code == 200
            dump = repr(redis_dump(r)).encode()
            assert not [p for p in erin["pseudonyms"] + anon["pseudonyms"] if p.encode() in dump]
        assert set(stream_events(r, settings)) == before - gone
        assert len(before - gone) == 3 + 2  # the other person's, untouched
    finally:
        for svc in (worker, kpi, collector):
            svc.stop()
