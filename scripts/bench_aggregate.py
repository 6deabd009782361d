"""Benchmark 2 — aggregation: events/s that one worker process applies from a pre-filled stream.

    python -m scripts.bench_aggregate [--events 500000] [--runs 3] [--profile DIR]

The shard streams are pre-filled with realistic seed-003 events exactly as the collector stores
them (one entry per 100-event batch and shard: ``n`` and ``e`` = msgpack list of StoredEvent,
pseudonymised ids, all inside the late window). Then ``analytics-aggregator --burst`` drains them;
events/s is the steady rate read from the shards' ``applied`` counters (from the first applied
batch to the last event; start-up and exit excluded; tiny runs fall back to wall time less the
start-up of a burst on empty streams). The same is done with two worker processes at once (total
rate). Ceiling, same server, same run: the worker's own script calls for the same entries
(captured from its code, not re-implemented: one per shard and read batch) are replayed by a
server-side driver script that runs ``apply.lua``'s body for 200 calls per driver call: the same
Redis commands (XPENDING, XACK, PFADD, HMGET/HSET, EXPIRE, session pairing) with no Python.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime
from typing import Any

import msgspec
import redis

from scripts import bench_common as bc

SALT = b"bench-salt-0123456789abcdef012345"
STAGE = "bench:ops"


def pseudo(raw: str) -> str:
    from collector.privacy import Pseudonymizer  # the one pseudonym function

    return Pseudonymizer.digest(SALT, raw)


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def stored_entries(events: list[dict[str, Any]], shards: int, batch: int = 100) -> list[tuple[int, bytes, int]]:
    """(shard, msgpack body, n) stream entries, as the collector writes them."""
    from schemas import keyspace
    from schemas.catalog import StoredEvent, compact

    now = int(time.time() * 1000)
    out = []
    for i in range(0, len(events), batch):
        by_shard: dict[int, list[StoredEvent]] = {}
        for ev in events[i : i + batch]:
            ts = ms(ev["ts_utc"])
            sid = ev.get("session_id")
            st = StoredEvent(
                event_id=ev["event_id"].replace("-", ""), name=ev["event_name"], version=1, ts=ts,
                ts_original=ts, received=now, village=pseudo(ev["anon_village_id"]),
                app_version=ev["app_version"], platform=ev["platform"],
                session=pseudo(sid) if sid else None, client_ts=ts, payload=ev["payload"],
            )
            by_shard.setdefault(keyspace.shard_of(ev["anon_village_id"], shards), []).append(st)
        for shard, evs in by_shard.items():
            out.append((shard, msgspec.msgpack.encode([compact(e) for e in evs]), len(evs)))
    return out


def prefill(r: redis.Redis, entries: list[tuple[int, bytes, int]]) -> None:
    from schemas import keyspace

    r.execute_command(*bc.FLUSH)
    for i in range(0, len(entries), 500):
        pipe = r.pipeline(transaction=False)
        for shard, body, n in entries[i : i + 500]:
            pipe.xadd(keyspace.stream(shard), {keyspace.ENTRY_COUNT: n, keyspace.ENTRY_EVENTS: body})
        pipe.execute()


def applied_total(r: redis.Redis, shards: int) -> int:
    from schemas import keyspace

    pipe = r.pipeline(transaction=False)
    for s in range(shards):
        pipe.hget(keyspace.shard_stats(s), "applied")
    return sum(int(v or 0) for v in pipe.execute())


def run_workers(
    env: dict[str, str], count: int, profile: str | None = None, watch: tuple[redis.Redis, int, int] | None = None,
) -> tuple[float, list[int], float | None]:
    """Wall seconds until ``count`` burst workers have all exited; their peak RSS (bytes); and
    with ``watch`` = (client, shards, events expected) the steady rate: events applied from the
    first time the shards' ``applied`` counters are seen non-zero until they reach the total
    (start-up, connection and exit excluded, measured instead of subtracted)."""
    first: tuple[float, int] | None = None
    done_at: float | None = None
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen([sys.executable, "-m", "aggregator.cli", "--name", f"bench-{i}", "--burst"],
                         env={**os.environ, **env})
        for i in range(count)
    ]
    spy = bc.pyspy_start(procs[0].pid, 600, profile) if profile else None
    rss = [0] * count
    while any(p.poll() is None for p in procs):
        if watch is not None and done_at is None:
            applied = applied_total(watch[0], watch[1])
            if first is None and applied:
                first = (time.perf_counter(), applied)
            if applied >= watch[2]:
                done_at = time.perf_counter()
        for i, p in enumerate(procs):
            if p.poll() is None:
                try:
                    rss[i] = max(rss[i], bc.rss_bytes(p.pid))
                except OSError:
                    pass
        time.sleep(0.01 if watch is not None else 0.02)
    elapsed = time.perf_counter() - t0
    if spy is not None:
        spy.wait(timeout=30)
    if any(p.returncode for p in procs):
        raise RuntimeError(f"a worker failed: {[p.returncode for p in procs]}")
    rate = None
    if watch is not None and first is not None and done_at is not None and done_at > first[0]:
        rate = (watch[2] - first[1]) / (done_at - first[0])
    return elapsed, rss, rate


def _strings(value: Any) -> bytes:
    """msgpack of nested lists of str/bytes, every string as a msgpack *str* (Lua's cmsgpack has no bin type)."""
    if isinstance(value, list):
        return b"\xdd" + len(value).to_bytes(4, "big") + b"".join(_strings(v) for v in value)
    raw = value.encode() if isinstance(value, str) else value
    return b"\xdb" + len(raw).to_bytes(4, "big") + raw


def ceiling(url: str, env: dict[str, str], entries: list[tuple[int, bytes, int]], per_call: int = 200) -> float:
    """Events/s when a server-side script applies the worker's own ops (captured) for the entries."""
    import aggregator.worker as w
    from schemas.settings import Settings

    r = redis.Redis.from_url(url)
    prefill(r, entries)
    settings = Settings.from_env(env)
    worker = w.Worker(r, settings, consumer="bench-ceiling")
    staged: list[bytes] = []

    def capture(keys: list[Any], args: list[Any], client: Any = None) -> None:
        norm = [a if isinstance(a, (bytes, str)) else str(a) for a in args]
        staged.append(_strings([list(keys), norm]))
        if client is not None:
            client.eval("return 1", 0)  # the worker reads its reply as 'applied'

    worker.apply = capture  # read and build exactly as the worker does; execute nothing
    w.ensure_groups(r, settings)
    while worker.read_new(block=False):
        pass
    for i in range(0, len(staged), 1000):
        r.rpush(STAGE, *staged[i : i + 1000])
    driver = (
        "local function apply_one(KEYS, ARGV)\n" + w.APPLY_LUA + "\nend\n"
        "local blobs = redis.call('LPOP', KEYS[1], ARGV[1])\n"
        "if not blobs then return 0 end\n"
        "for _, blob in ipairs(blobs) do\n"
        "  local t = cmsgpack.unpack(blob)\n"
        "  apply_one(t[1], t[2])\n"
        "end\n"
        "return #blobs\n"
    )
    script = r.register_script(driver)
    t0 = time.perf_counter()
    done = 0
    while True:
        n = script(keys=[STAGE], args=[per_call])
        if not n:
            break
        done += n
    elapsed = time.perf_counter() - t0
    applied = applied_total(r, settings.stream_shards)
    r.close()
    events = sum(n for _, _, n in entries)
    if done != len(staged) or applied != events:
        print(f"warning: ceiling applied {applied:,} of {events:,} events ({done}/{len(staged)} entries)")
    return events / elapsed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench_aggregate", description=__doc__.split("\n")[1])
    p.add_argument("--events", type=int, default=500_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--read-count", type=int, default=None, help="READ_COUNT for the workers")
    p.add_argument("--profile", metavar="DIR", help="py-spy one extra single-worker run")
    p.add_argument("--redis-url", help="use this server (it is FLUSHED) instead of a private one")
    args = p.parse_args(argv)
    from schemas.settings import Settings

    events = bc.realistic_events(args.events, villages=20_000, span_hours=20)
    results: dict[str, list[float]] = {"one": [], "two": [], "ceiling": [], "startup": [], "startup2": []}
    rss_one: list[int] = []
    prof: dict[str, Any] = {}
    with bc.redis_server(args.redis_url) as url:
        extra = {"READ_COUNT": str(args.read_count)} if args.read_count else {}
        env = bc.bench_env(url, **extra)
        shards = Settings.from_env(env).stream_shards
        entries = stored_entries(events, shards)
        r = redis.Redis.from_url(url)
        for run in range(args.runs):
            r.execute_command(*bc.FLUSH)
            startup, _, _ = run_workers(env, 1)
            results["startup"].append(startup)
            prefill(r, entries)
            t, rss, rate = run_workers(env, 1, watch=(r, shards, len(events)))
            ok1 = applied_total(r, shards)
            results["one"].append(rate or len(events) / max(1e-9, t - startup))
            rss_one.append(rss[0])
            # two processes starting at once on a shared machine start slower than one: without a
            # steady rate (tiny runs), their own start-up (a burst of two on empty streams) is subtracted
            r.execute_command(*bc.FLUSH)
            startup2, _, _ = run_workers(env, 2)
            results["startup2"].append(startup2)
            prefill(r, entries)
            t2, _, rate2 = run_workers(env, 2, watch=(r, shards, len(events)))
            ok2 = applied_total(r, shards)
            results["two"].append(rate2 or len(events) / max(1e-9, t2 - startup2))
            results["ceiling"].append(ceiling(url, env, entries))
            print(f"run {run + 1}: one worker {results['one'][-1]:,.0f} ev/s (applied {ok1:,}), "
                  f"two {results['two'][-1]:,.0f} ev/s (applied {ok2:,}), "
                  f"ceiling {results['ceiling'][-1]:,.0f} ev/s", flush=True)
        if args.profile:
            os.makedirs(args.profile, exist_ok=True)
            out = os.path.join(args.profile, "worker.pyspy.txt")
            prefill(r, entries)
            run_workers(env, 1, profile=out)
            prof = bc.summarize_collapsed(out)
        r.close()
    one, two, ceil = (bc.median(results[k]) for k in ("one", "two", "ceiling"))
    summary = {
        **bc.meta(args.runs),
        "events": args.events,
        "entries": len(entries),
        "one_worker_eps": one,
        "two_workers_eps": two,
        "runs_one_eps": [round(x) for x in results["one"]],
        "runs_two_eps": [round(x) for x in results["two"]],
        "startup_s": bc.median(results["startup"]),
        "startup_two_s": bc.median(results["startup2"]),
        "ceiling_eps": ceil,
        "ratio": one / ceil,
        "two_over_one": two / one,
        "worker_peak_rss_mb": bc.median(rss_one) / 2**20,
        "target_eps": 150_000,
        "profile": prof or None,
    }
    rows = [
        ("one worker", one, ceil, one / ceil, ">= 150,000"),
        ("two workers (total)", two, ceil, two / ceil, ">= one worker"),
    ]
    bc.emit("aggregate", summary, rows, ("figure", "events/s", "ceiling (server-side)", "ratio", "target"))
    if prof:
        bc.print_profile("one worker draining", prof)
    return summary


if __name__ == "__main__":
    main()
