"""Benchmark 1, the collector's own code: CPU per event of decode + validate and of the store write.

    python -m scripts.bench_collector_path [--windows 9 --window-batches 200 --ids repeat|fresh]

No HTTP: one process decodes 100-event seed-003 batches (``Batch``), runs ``Validator.run`` and
``EventStore.write`` into a private Valkey, and reports the **minimum over the windows** of the CPU
per event of each part (this process's ``process_time``; the server's from ``INFO cpu``): on a
shared machine the neighbours can only add to a window, so the minimum is the figure least moved by
them. ``--ids repeat``: the benchmark's batch templates, whose villages and sessions repeat (their
pseudonyms come from the memo, as in ``bench_ingest``); ``fresh``: each batch gets its own
villages and sessions, so each is hashed once per batch, as with real traffic. Also the rate
limiter's per-request cost (``RateLimiter.over``, two subjects), client and server.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import time
from typing import Any

import msgspec

from scripts import bench_common as bc

_SESSION = re.compile(rb'"session_id":"[0-9a-f]{8}')


def fresh(body: bytes, k: int) -> bytes:
    """The batch with villages and sessions of its own (``k`` distinct per batch)."""
    body = body.replace(b'"village-', b'"village-%07x-' % k)
    return _SESSION.sub(b'"session_id":"%08x' % (k & 0xFFFFFFFF), body)


async def _server_cpu(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def measure(url: str, bodies: list[bytes], windows: int, per_window: int, ids: str,
                  rate_limit_requests: int, pipelined: bool = True) -> dict[str, Any]:
    from collector.privacy import Pseudonymizer
    from collector.ratelimit import RateLimiter
    from collector.store import EventStore
    from collector.validate import Validator
    from infra.connection import open_async
    from infra.pipelined import Pipelined
    from schemas.catalog import Batch
    from schemas.settings import Settings

    settings = Settings.from_env(bc.bench_env(url))
    client = await open_async(url)  # as the collector opens it
    pseudo = Pseudonymizer(client, settings)
    link = Pipelined.for_client(client) if pipelined else None  # as the collector's app does
    validator, store = Validator(settings, pseudo), EventStore(client, settings, link)
    decoder = msgspec.json.Decoder(Batch)
    validate, write, server = [], [], []
    k = 0
    for w in range(windows):
        raws = []
        for i in range(per_window):
            k += 1
            body = bc.stamp(bodies[i % len(bodies)], (w << 24) | (250 << 16) | i)
            raws.append(fresh(body, k) if ids == "fresh" else body)
        t0 = time.process_time()
        outs, n = [], 0
        for raw in raws:
            batch = decoder.decode(raw)
            n += len(batch.events)
            outs.append(await validator.run(batch.events, int(time.time() * 1000), 0))
        t1 = time.process_time()
        s0 = await _server_cpu(client)
        t2 = time.process_time()
        for out in outs:
            await store.write(out.by_shard, out.rejections)
        t3 = time.process_time()
        s1 = await _server_cpu(client)
        if w >= min(2, windows - 1):  # the first windows warm the memos, salts and connections
            validate.append((t1 - t0) / n * 1e6)
            write.append((t3 - t2) / n * 1e6)
            server.append((s1 - s0) / n * 1e6)
        await client.execute_command(*bc.FLUSH)
    limiter = RateLimiter(client, settings, pseudo, link)
    subjects = [("ip", "192.0.2.1"), ("subject", bc.WRITE_KEY)]
    await limiter.over(subjects, int(time.time() * 1000))
    s0, t0 = await _server_cpu(client), time.process_time()
    for _ in range(rate_limit_requests):
        await limiter.over(subjects, int(time.time() * 1000))
    t1, s1 = time.process_time(), await _server_cpu(client)
    if link is not None:
        await link.aclose()
    await client.aclose()
    return {
        "validate_us": min(validate), "store_client_us": min(write), "server_us": min(server),
        "collector_us": min(validate) + min(write),
        "rate_limit_client_us_per_request": (t1 - t0) / rate_limit_requests * 1e6,
        "rate_limit_server_us_per_request": (s1 - s0) / rate_limit_requests * 1e6,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(prog="bench_collector_path", description=__doc__.split("\n")[1])
    p.add_argument("--windows", type=int, default=9, help="the first two warm up")
    p.add_argument("--window-batches", type=int, default=200, help="100-event batches per window")
    p.add_argument("--ids", choices=("repeat", "fresh"), default="repeat")
    p.add_argument("--rate-limit-requests", type=int, default=3000)
    p.add_argument("--templates", type=int, default=200, help="distinct batch bodies (x100 events)")
    p.add_argument("--redis-py", action="store_true",
                   help="store and rate limit through redis-py's client, not the pipelined connection")
    p.add_argument("--redis-url", help="use this server (it is FLUSHED) instead of a private one")
    args = p.parse_args(argv)
    bodies = bc.batch_templates(bc.realistic_events(args.templates * 100))
    with bc.redis_server(args.redis_url) as url:
        got = asyncio.run(measure(url, bodies, max(1, args.windows), args.window_batches, args.ids,
                                  max(1, args.rate_limit_requests), not args.redis_py))
    summary = {**bc.meta(args.windows), "statistic": "minimum over windows", "ids": args.ids,
               "client": "redis-py" if args.redis_py else "pipelined",
               "window_events": args.window_batches * 100, **got}
    rows = [
        ("decode + validate + pseudonymise", got["validate_us"], "us per event"),
        ("store write, client side", got["store_client_us"], "us per event"),
        ("server (append script)", got["server_us"], "us per event"),
        ("rate limit, client / server",
         f"{got['rate_limit_client_us_per_request']:.0f} / {got['rate_limit_server_us_per_request']:.0f}",
         "us per request"),
    ]
    bc.emit("collector_path", summary, rows, ("figure", "CPU", "unit"))
    return summary


if __name__ == "__main__":
    main()
