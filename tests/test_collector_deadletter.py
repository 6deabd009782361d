"""The dead-letter stream: list, count and replay after a fix, through the collector's own pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid


from schemas import keyspace
from schemas.catalog import CATALOG, STORED_ENCODER, StoredEvent, VillageActive
from schemas.settings import Settings
from tests.test_collector_support import HEADERS, ROUTE, batch, client, dead_letters, event, stored


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collector.deadletter_cli", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=60, check=True,
    )


def test_list_count_and_replay_after_raising_the_size_limit(env, r, rng):
    small = {**env, "ANALYTICS_MAX_EVENT_SIZE": "300"}
    village = "village-replayed-1"
    session = str(uuid.uuid4())
    start = event(rng, "session_start", anon_village_id=village, session_id=session)
    start["payload"] = {"resumed": False, "pad": "p" * 400}  # too large under the old limit
    end = event(rng, "session_end", anon_village_id=village, session_id=session)
    broken = event(rng, ts_utc="not a time")
    with client(small) as c:
        body = c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([start, end, broken]))).json()
    assert body["accepted"] == 1 and [x["index"] for x in body["rejected"]] == [0, 2]

    counted = json.loads(cli(small, "count").stdout)
    assert counted == {"total": 2, "by_reason": {"invalid": 1, "too_large": 1}}
    listed = [json.loads(line) for line in cli(small, "list").stdout.splitlines()]
    assert [e["index"] for e in listed] == [0, 2]
    assert listed[0]["event"]["anon_village_id"].startswith("pseudo:")
    assert village not in json.dumps(listed) and session not in json.dumps(listed)
    only_size = [json.loads(x) for x in cli(small, "list", "--reason", "too_large").stdout.splitlines()]
    assert [e["index"] for e in only_size] == [0]

    dry = json.loads(cli(small, "replay", "--dry-run").stdout)
    assert dry["replayed"] == 0 and dry["still_failing"] == 2
    fixed = {**env, "ANALYTICS_MAX_EVENT_SIZE": "4096"}
    report = json.loads(cli(fixed, "replay").stdout)
    assert (report["replayed"], report["still_failing"]) == (1, 1)

    settings = Settings.from_env(fixed)
    events = {e.name: (shard, e) for shard, e in stored(r, settings)}
    (s_shard, s), (e_shard, e) = events["session_start"], events["session_end"]
    # same shard, same pseudonyms as the event accepted first time: the session still pairs
    assert s_shard == e_shard and s.village == e.village and s.session == e.session
    assert s.event_id == uuid.UUID(start["event_id"]).hex and s.payload == {"resumed": False}
    assert s.received == e.received  # the original arrival time is kept
    remaining = dead_letters(r)
    assert [rec["index"] for _, rec in remaining] == [2]
    again = json.loads(cli(fixed, "replay").stdout)
    assert again["replayed"] == 0 and len(stored(r, settings)) == 2


def test_replay_after_a_catalog_fix_and_of_a_worker_poison_entry(env, r, rng, monkeypatch):
    ev = event(rng, event_version=2)
    with client(env) as c:
        body = c.post(ROUTE, headers=HEADERS, content=json.dumps(batch([ev]))).json()
    assert body["rejected"][0]["errors"][0].startswith("$.events[0].event_name: unknown event")

    settings = Settings.from_env(env)
    poison = [StoredEvent(event_id=uuid.uuid4().hex, name="village_active", version=1, ts=1,
                          ts_original=1, received=1, village="ab" * 12, app_version="1",
                          platform="web")]
    body_bytes = STORED_ENCODER.encode(poison)
    reason = {"stream": keyspace.stream(1), "entry_id": "1-0", "reason": "poison", "at": 1}
    r.xadd(keyspace.DEAD_LETTER, {keyspace.ENTRY_REASON: json.dumps(reason),
                                  keyspace.ENTRY_EVENTS: body_bytes})

    # the fix: version 2 of village_active enters the catalog (here, in this process)
    class VillageActiveV2(VillageActive, kw_only=True):
        event_version: int

    monkeypatch.setitem(CATALOG, ("village_active", 2), VillageActiveV2)  # the default profile's catalog
    import asyncio

    from collector import deadletter
    from infra.connection import open_async

    async def go():
        client_ = await open_async(settings.redis_url)
        try:
            return await deadletter.replay(client_, settings)
        finally:
            await client_.aclose()

    report = asyncio.run(go())
    assert (report.replayed, report.still_failing) == (2, [])
    assert dead_letters(r) == []
    names = sorted((e.version, e.event_id) for _, e in stored(r, settings))
    assert names == sorted([(1, poison[0].event_id), (2, uuid.UUID(ev["event_id"]).hex)])
