"""The Python SDK (analytics_client) against the running collector: a collector killed mid-stream
and restarted loses nothing and counts nothing twice; retries keep ids and restamp sent_at; the
bounded queue, opt-out and sampling; the same sampling numbers as the browser SDK."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from analytics_client import AsyncClient, Client, sample_fraction, sampled
from schemas.settings import Settings
from tests import services
from tests.conftest import WRITE_KEY
from tests.sdk_helpers import stored_events, stored_ids, wait_stored

FAST = {"flush_at": 25, "flush_interval": 0.2, "retry_base": 0.05, "retry_max": 0.5}


def collector_on(env: dict[str, str], port: int) -> services.Service:
    svc = services.Service("collector", ["collector.cli"], env, port)
    svc.wait_ready()
    return svc


def test_thread_client_rides_out_a_killed_collector_every_event_once(
        env: dict[str, str], settings: Settings, r: redis.Redis) -> None:
    port = services.free_port()
    svc = collector_on(env, port)
    client = Client(f"http://127.0.0.1:{port}", WRITE_KEY, app_version="1.0.0", platform="server", **FAST)
    ids: list[str] = []
    try:
        for i in range(1500):
            eid = client.track("dialogue_open", {"dialogue_id": "elder"}, actor=f"village-py-{i % 40}")
            assert eid is not None
            ids.append(eid)
            if i == 500:
                svc.stop(signal.SIGKILL)  # mid-stream: batches in flight get no answer
            if i == 1000:
                svc = collector_on(env, port)
            time.sleep(0.002)
        assert client.flush(timeout=60)
        stats = client.stats
        assert stats.retries > 0 and stats.sent == 1500 and stats.dropped == 0
    finally:
        client.close(timeout=5)
        svc.stop()
    assert stored_ids(r, settings) == {i: 1 for i in ids}


def test_async_client_rides_out_a_killed_collector_every_event_once(
        env: dict[str, str], settings: Settings, r: redis.Redis) -> None:
    port = services.free_port()
    box = {"svc": collector_on(env, port)}

    async def run() -> tuple[list[str], Any]:
        out: list[str] = []
        async with AsyncClient(f"http://127.0.0.1:{port}", WRITE_KEY, app_version="1.0.0", **FAST) as client:
            client.identify("village-async")
            for i in range(600):
                eid = client.track("command_executed", {"command": "build", "success": True})
                assert eid is not None
                out.append(eid)
                if i == 200:
                    await asyncio.to_thread(box["svc"].stop, signal.SIGKILL)
                if i == 400:
                    box["svc"] = await asyncio.to_thread(collector_on, env, port)
                await asyncio.sleep(0.002)
            assert await client.flush(timeout=60)
            return out, client.stats

    try:
        ids, stats = asyncio.run(run())
    finally:
        box["svc"].stop()
    assert stats.retries > 0 and stats.sent == 600
    assert stored_ids(r, settings) == {i: 1 for i in ids}


class Faulty(httpx.BaseTransport):
    """In front of the real collector: the first answers are 503s with Retry-After (the first
    one after the collector stored the batch: an answer lost on the way back)."""

    def __init__(self, storm: int) -> None:
        self.real = httpx.HTTPTransport()
        self.storm = storm
        self.seen: list[dict[str, Any]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(json.loads(request.read()))
        if len(self.seen) == 1:
            assert self.real.handle_request(request).status_code == 202
        if len(self.seen) <= self.storm:
            return httpx.Response(503, headers={"Retry-After": "0.3"}, json={"error": "backpressure"})
        return self.real.handle_request(request)

    def close(self) -> None:
        self.real.close()


def test_retries_keep_the_batch_and_ids_and_stamp_sent_at_each_time(
        env: dict[str, str], settings: Settings, r: redis.Redis) -> None:
    svc = services.collector(env)
    faulty = Faulty(storm=3)
    client = Client(svc.url, WRITE_KEY, transport=faulty, **{**FAST, "flush_at": 10})
    try:
        client.identify("village-retry")
        ids = [client.track("dialogue_open", {"dialogue_id": "merchant"}) for _ in range(10)]
        assert client.flush(timeout=30)
    finally:
        client.close(timeout=5)
        svc.stop()
    assert len(faulty.seen) == 4
    assert {b["batch_id"] for b in faulty.seen} == {faulty.seen[0]["batch_id"]}
    assert all([e["event_id"] for e in b["events"]] == ids for b in faulty.seen)
    assert len({b["sent_at"] for b in faulty.seen}) == 4
    assert stored_ids(r, settings) == {i: 1 for i in ids}  # the lost answer's resend counted once


def test_bounded_queue_drops_oldest_and_counts_while_the_collector_is_away(
        env: dict[str, str], settings: Settings, r: redis.Redis) -> None:
    port = services.free_port()  # nothing listens yet
    # flush_at above what is tracked: no batch is cut meanwhile, so all 30 compete for the 10 places
    client = Client(f"http://127.0.0.1:{port}", WRITE_KEY, max_queue_size=10,
                    **{**FAST, "flush_at": 50, "flush_interval": 60.0})
    try:
        client.identify("village-bounded")
        ids = [client.track("dialogue_open", {"dialogue_id": "elder"}) for _ in range(30)]
        stats = client.stats
        assert stats.dropped == 20 and stats.queued == 10
        svc = collector_on(env, port)
        try:
            assert client.flush(timeout=30)
        finally:
            svc.stop()
    finally:
        client.close(timeout=5)
    assert stored_ids(r, settings) == {i: 1 for i in ids[-10:]}  # the newest ten


def test_opt_out_and_sampling(env: dict[str, str], settings: Settings, r: redis.Redis) -> None:
    svc = services.collector(env)
    client = Client(svc.url, WRITE_KEY, sample_rate=0.5, **FAST)
    try:
        client.opt_out()
        assert not client.is_analytics_enabled()
        assert client.track("dialogue_open", {"dialogue_id": "elder"}, actor="village-x") is None
        assert client.flush(timeout=5) and client.stats.requests == 0
        client.opt_in()
        actors = [f"village-s-{i}" for i in range(200)]
        kept = [a for a in actors if sampled(a, 0.5)]
        assert 60 < len(kept) < 140
        ids = {a: client.track("dialogue_open", {"dialogue_id": "elder"}, actor=a) for a in actors}
        assert [a for a, i in ids.items() if i is not None] == kept  # per actor, deterministic
        assert client.flush(timeout=30)
    finally:
        client.close(timeout=5)
        svc.stop()
    got = wait_stored(r, settings, len(kept))
    assert got == {i: 1 for i in ids.values() if i is not None}
    assert len({ev.village for ev in stored_events(r, settings)}) == len(kept)


def test_sampling_agrees_with_the_browser_sdk() -> None:
    actors = ["village-1", "v", "ünïcødé-village", "x" * 100, "anon-3f2b"]
    src = Path(__file__).resolve().parent.parent / "sdk" / "js" / "src" / "util.js"
    script = (f"import({json.dumps(src.as_uri())}).then(m => console.log(JSON.stringify("
              f"{json.dumps(actors)}.map(m.sampleFraction))))")
    out = subprocess.run(["node", "--input-type=module", "-e", script], capture_output=True, text=True,
                         check=True, timeout=60)
    assert json.loads(out.stdout) == [sample_fraction(a) for a in actors]
