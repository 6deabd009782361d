"""Benchmark 3 — KPI API: p50/p99 latency of a 90-day (``--days``) range query, cached and uncached.

    python -m scripts.bench_kpi [--days 90] [--requests 2000] [--runs 3]

Aggregates for ``--days`` + 1 UTC days are written on every shard as the workers keep them
(dense HyperLogLogs of ``--villages-per-day`` pseudonyms per shard, daily/hourly counter hashes,
DDSketch duration hashes of realistic session lengths). One client sends the range query for each
of the seed-003 KPIs in ``KPIS`` back to back over a keep-alive connection (latency = the full HTTP
round trip seen by the client). Cached: a KPI API with its normal cache, after one warming request
(``X-Cache: hit`` is checked). Uncached: a second KPI API with the caches set to 0 s (every answer
``X-Cache: miss``). Ceiling: the same Redis reads pipelined by one Python process with no HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import random
import time
from datetime import date, timedelta
from typing import Any

import redis

from scripts import bench_common as bc
from scripts.simulate import sample_duration

KPIS = ("daily-active-villages", "session-duration?metric=p95", "dialogue-opens", "command-executions",
        "village-retention?after=7", "total-villages", "new-villages", "weekly-active-villages")


def fill(r: redis.Redis, shards: int, days: list[date], villages: int, seed: int = 3) -> None:
    from schemas import keyspace
    from kinds import count
    from schemas.sketch import Sketch

    rng = random.Random(seed)
    r.execute_command(*bc.FLUSH)
    for d in days:
        day = d.isoformat()
        pipe = r.pipeline(transaction=False)
        for shard in range(shards):
            members = [f"{shard}-{day}-{i:07d}" for i in range(villages)]
            for i in range(0, len(members), 1000):
                pipe.pfadd(keyspace.dau(shard, day), *members[i : i + 1000])
            counts: dict[str, int] = {}
            for name, per in (("session_start", 1), ("session_end", 1), ("village_active", 1),
                              ("dialogue_open", 2), ("command_executed", 3)):
                counts[name] = villages * per
                for h in range(24):
                    counts[count.hour_field(name, h)] = villages * per // 24
            pipe.hset(keyspace.counts(shard, day), mapping=counts)
            sketch = Sketch()
            for _ in range(villages):
                sketch.add(sample_duration(rng))
            pipe.hset(keyspace.session_sketch(shard, day), mapping=sketch.fields())
        pipe.execute()


def rollup_memory(r: redis.Redis) -> dict[str, float]:
    """Bytes per rolled-up day of each rollup hash (``MEMORY USAGE`` / fields), and of the
    session sketches' rollups (one string per day)."""
    from schemas import keyspace

    out: dict[str, float] = {}
    for key in r.scan_iter(match=keyspace.ROLLUPS, count=1000):
        fields = r.hlen(key)
        variants = {f.split(b":", 1)[0] for f in r.hkeys(key)}
        for v in variants:
            n = sum(1 for f in r.hkeys(key) if f.split(b":", 1)[0] == v)
            out[f"{key.decode().rsplit(':', 1)[-1]}:{v.decode()}"] = n
        out[key.decode().rsplit(":", 1)[-1] + " bytes/field"] = round(
            (r.memory_usage(key, samples=0) or 0) / max(1, fields), 1)
    sess = list(r.scan_iter(match=keyspace.session_rollup("*"), count=1000))
    if sess:
        out["session sketch rollup bytes/day"] = round(
            sum(r.memory_usage(k, samples=0) or 0 for k in sess) / len(sess), 1)
    return out


def measure(port: int, path: str, token: str, n: int, expect: str) -> tuple[list[float], int]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    lat: list[float] = []
    wrong = 0
    for _ in range(n):
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        lat.append((time.perf_counter() - t0) * 1000)
        if resp.status != 200 or resp.getheader("X-Cache", expect) != expect or not body:
            wrong += 1
    conn.close()
    return lat, wrong


def ceiling(url: str, start: date, end: date, n: int) -> list[float]:
    """Latency (ms) of the same Redis reads, pipelined by one Python process, no HTTP."""
    import kinds
    from kinds.base import Query
    from kpi_api.kpis import registry
    from schemas.settings import Settings

    settings = Settings.from_env(bc.bench_env(url))

    async def go() -> list[float]:
        import redis.asyncio as aredis

        r = aredis.Redis.from_url(url)
        lat = []
        for i in range(n):
            t0 = time.perf_counter()
            name = ("daily-active-villages", "session-duration", "dialogue-opens", "command-executions")[i % 4]
            kpi = registry(settings.analytics_profile)[name]
            await kinds.module(kpi.kind).series(r, settings, Query(kpi, start, end, metric="p95"))
            lat.append((time.perf_counter() - t0) * 1000)
        await r.aclose()
        return lat

    try:
        return asyncio.run(go())
    except (TypeError, AttributeError) as exc:  # the query functions changed shape
        print(f"ceiling skipped: {exc}")
        return []


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench_kpi", description=__doc__.split("\n")[1])
    p.add_argument("--days", type=int, default=90)
    p.add_argument("--requests", type=int, default=2000, help="cached requests per run (uncached and ceiling: 1/10)")
    p.add_argument("--villages-per-day", type=int, default=5000, help="per shard")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--redis-url", help="use this server (it is FLUSHED) instead of a private one")
    args = p.parse_args(argv)
    from infra import tokens
    from schemas.settings import Settings

    end = date.today()
    start = end - timedelta(days=args.days - 1)
    days = [start + timedelta(days=i) for i in range(-1, args.days + 1)]
    token = tokens.issue(bc.JWT_SECRET, "staff")
    q = f"start={start.isoformat()}&end={end.isoformat()}"
    per: dict[str, list[dict[str, float]]] = {"cached": [], "uncached": [], "ceiling": []}
    wrong = 0
    with bc.redis_server(args.redis_url) as url:
        r = redis.Redis.from_url(url)
        env = bc.bench_env(url, KPI_RATE_LIMIT_PER_MINUTE="1000000000", KPI_MIN_GROUP_SIZE="0")
        fill(r, Settings.from_env(env).stream_shards, days, args.villages_per_day)
        cached = bc.kpi_api(env)
        uncached = bc.kpi_api({**env, "KPI_CACHE_SECONDS": "0", "KPI_CACHE_CLOSED_SECONDS": "0"})
        with bc.running(cached, uncached):
            for run in range(args.runs):
                for mode, svc, n, expect in (("cached", cached, args.requests, "hit"),
                                             ("uncached", uncached, max(4, args.requests // 10), "miss")):
                    lat: list[float] = []
                    by_kpi: dict[str, float] = {}
                    for kpi in KPIS:
                        path = f"/internal/analytics/kpis/{kpi}{'&' if '?' in kpi else '?'}{q}"
                        measure(svc.port or 0, path, token, 2, expect if mode == "uncached" else "")  # warm
                        got, bad = measure(svc.port or 0, path, token, max(1, n // len(KPIS)), expect)
                        lat += got
                        wrong += bad
                        by_kpi[kpi.split("?")[0] + "_p99"] = bc.percentile(got, 0.99)
                        by_kpi[kpi.split("?")[0] + "_p50"] = bc.percentile(got, 0.5)
                    per[mode].append({"p50": bc.percentile(lat, 0.5), "p99": bc.percentile(lat, 0.99), **by_kpi})
                lat = ceiling(url, start, end, max(4, args.requests // 10))
                if lat:
                    per["ceiling"].append({"p50": bc.percentile(lat, 0.5), "p99": bc.percentile(lat, 0.99)})
                print(f"run {run + 1}: cached p99 {per['cached'][-1]['p99']:.2f} ms, "
                      f"uncached p99 {per['uncached'][-1]['p99']:.2f} ms", flush=True)
        rollup_bytes = rollup_memory(r)
        r.close()
    med = lambda mode, k: bc.median([x[k] for x in per[mode]])  # noqa: E731
    summary = {
        **bc.meta(args.runs),
        "days": args.days,
        "villages_per_day_per_shard": args.villages_per_day,
        "cached_p50_ms": med("cached", "p50"),
        "cached_p99_ms": med("cached", "p99"),
        "uncached_p50_ms": med("uncached", "p50"),
        "uncached_p99_ms": med("uncached", "p99"),
        "ceiling_p50_ms": med("ceiling", "p50") if per["ceiling"] else None,
        "ceiling_p99_ms": med("ceiling", "p99") if per["ceiling"] else None,
        "uncached_by_kpi_ms": {k: round(med("uncached", k), 2) for k in per["uncached"][0] if "_p" in k},
        "cached_by_kpi_ms": {k: round(med("cached", k), 2) for k in per["cached"][0] if "_p" in k},
        "wrong_answers": wrong,
        "rollup_bytes_per_field": rollup_bytes,
        "target_cached_p99_ms": 5,
        "target_uncached_p99_ms": 50,
    }
    c50, c99 = summary["ceiling_p50_ms"] or float("nan"), summary["ceiling_p99_ms"] or float("nan")
    rows = [
        ("cached", summary["cached_p50_ms"], summary["cached_p99_ms"], "", "p99 < 5"),
        ("uncached", summary["uncached_p50_ms"], summary["uncached_p99_ms"],
         summary["uncached_p99_ms"] / c99 if c99 == c99 else "", "p99 < 50"),
        ("ceiling: same reads, no HTTP", c50, c99, 1.0, ""),
    ]
    for kpi in KPIS:
        k = kpi.split("?")[0]
        rows.append((f"  uncached {k}", summary["uncached_by_kpi_ms"][k + "_p50"],
                     summary["uncached_by_kpi_ms"][k + "_p99"], "", ""))
    bc.emit("kpi", summary, rows, (f"{args.days}-day query", "p50 ms", "p99 ms", "p99 / ceiling", "target"))
    return summary


if __name__ == "__main__":
    main()
