"""Benchmark 4 — memory: Redis bytes per retained event; worker and collector RSS as events grow.

    python -m scripts.bench_memory [--events 5000000] [--checkpoints 1000000,2500000,5000000]

The real services run (HTTP collector, one continuous worker); wrk (or the asyncio load generator)
sends batches of 100 realistic seed-003 events with distinct ids. At each checkpoint the streams
are drained, then: Redis ``used_memory`` growth per event (all-in: stream entry + dedup marker,
which lives 48 h, + session state + aggregates), the streams' own bytes per event (what is kept
for ANALYTICS_RETENTION_DAYS), the events' JSON size as sent, and both processes' RSS.
Single run (the sizes make several runs too long); RSS is a level, not a rate, so noise matters less.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from typing import Any

import redis

from scripts import bench_common as bc
from scripts.bench_ingest import WRK_LUA, run_loadgen, run_wrk


def drained(r: redis.Redis, settings: Any, timeout: float = 600) -> None:
    from aggregator.worker import pending_total

    deadline = time.monotonic() + timeout
    while pending_total(r, settings) and time.monotonic() < deadline:
        time.sleep(0.2)


def stream_bytes(r: redis.Redis, shards: int) -> int:
    from schemas import keyspace

    return sum(int(r.memory_usage(keyspace.stream(s), samples=0) or 0) for s in range(shards))


def applied(r: redis.Redis, shards: int) -> int:
    from schemas import keyspace

    return sum(int(r.hget(keyspace.shard_stats(s), "applied") or 0) for s in range(shards))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench_memory", description=__doc__.split("\n")[1])
    p.add_argument("--events", type=int, default=5_000_000)
    p.add_argument("--checkpoints", default="", help="comma-separated event counts (default: 1M steps)")
    p.add_argument("--chunk-seconds", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--redis-url", help="use this server (it is FLUSHED) instead of a private one")
    args = p.parse_args(argv)
    from schemas.settings import Settings

    marks = sorted(int(x) for x in args.checkpoints.split(",") if x) or \
        list(range(1_000_000, args.events + 1, 1_000_000)) or [args.events]
    use_wrk = bool(shutil.which("wrk"))
    tmp = tempfile.mkdtemp(prefix="bench-memory-")
    events = bc.realistic_events(20_000)
    json_bytes = bc.json_size(events)
    bodies_path = os.path.join(tmp, "bodies.jsonl")
    with open(bodies_path, "wb") as f:
        f.write(b"\n".join(bc.batch_templates(events)) + b"\n")
    lua_path = os.path.join(tmp, "body.lua")
    with open(lua_path, "w") as f:
        f.write(WRK_LUA)
    rows_out: list[dict[str, Any]] = []
    t_start = time.monotonic()
    with bc.redis_server(args.redis_url) as url:
        r = redis.Redis.from_url(url)
        env = bc.bench_env(url)
        settings = Settings.from_env(env)
        shards = settings.stream_shards
        svc = bc.collector(env)
        worker = bc.Proc(["aggregator.cli", "--name", "bench-mem"], env)
        with bc.running(svc, worker):
            time.sleep(0.5)
            base = int(r.info("memory")["used_memory"])
            chunk = 0
            for mark in marks:
                while applied(r, shards) < mark and chunk < 250:  # the wrk id salt is one byte
                    chunk += 1
                    if use_wrk:
                        run_wrk(svc.port or 0, bodies_path, lua_path, args.chunk_seconds, args.connections, 1, chunk)
                    else:
                        run_loadgen(svc.port or 0, bodies_path, "closed", args.chunk_seconds, 2,
                                    args.connections // 2, 0, chunk * 2)
                    drained(r, settings)
                drained(r, settings)
                n = applied(r, shards)
                used = int(r.info("memory")["used_memory"])
                row = {
                    "events": n,
                    "bytes_per_event_all": (used - base) / n,
                    "stream_bytes_per_event": stream_bytes(r, shards) / n,
                    "collector_rss_mb": bc.tree_rss_bytes(svc.pid) / 2**20,
                    "worker_rss_mb": bc.rss_bytes(worker.pid) / 2**20,
                    "elapsed_s": time.monotonic() - t_start,
                }
                rows_out.append(row)
                print(f"{n:,} events: {row['bytes_per_event_all']:.0f} B/event all-in, "
                      f"{row['stream_bytes_per_event']:.0f} B/event in the stream, collector "
                      f"{row['collector_rss_mb']:.1f} MB, worker {row['worker_rss_mb']:.1f} MB", flush=True)
        r.close()
    shutil.rmtree(tmp, ignore_errors=True)
    first, last = rows_out[0], rows_out[-1]
    summary = {
        **bc.meta(1),
        "json_bytes_per_event": json_bytes,
        "checkpoints": rows_out,
        "stream_bytes_per_event": last["stream_bytes_per_event"],
        "all_in_bytes_per_event": last["bytes_per_event_all"],
        "stream_vs_json": last["stream_bytes_per_event"] / json_bytes,
        "all_in_vs_json": last["bytes_per_event_all"] / json_bytes,
        "collector_rss_growth": last["collector_rss_mb"] / first["collector_rss_mb"] - 1,
        "worker_rss_growth": last["worker_rss_mb"] / first["worker_rss_mb"] - 1,
        "target_vs_json": 0.5,
        "target_rss_growth": 0.10,
    }
    rows = [(f"{x['events']:,}", x["bytes_per_event_all"], x["stream_bytes_per_event"], json_bytes,
             x["collector_rss_mb"], x["worker_rss_mb"]) for x in rows_out]
    bc.emit("memory", summary, rows, ("events", "Redis B/event all-in", "stream B/event",
                                      "JSON B/event", "collector RSS MB", "worker RSS MB"))
    return summary


if __name__ == "__main__":
    main()
