"""``analytics-aggregator``: run consumer-group workers.

``--burst`` drains and exits; ``--workers N`` runs and supervises N worker processes;
``--metrics-port P`` serves Prometheus metrics (children of ``--workers`` on P, P+1, ...);
``--check`` exits non-zero when a worker's heartbeat is stale; ``--shard-map`` prints which
master holds which shard.
"""

from __future__ import annotations

import argparse
import logging
import sys

import redis

from aggregator import metrics
from aggregator.health import stale_workers
from aggregator.supervisor import Supervisor
from aggregator.worker import Worker, default_consumer_name
from infra.connection import open_sync
from schemas.settings import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="analytics-aggregator")
    parser.add_argument("--name", help="stable consumer name (default: host-pid)")
    parser.add_argument("--burst", action="store_true", help="drain what is there, then exit")
    parser.add_argument("--workers", type=int, default=1, help="worker processes to run (default 1)")
    parser.add_argument(
        "--metrics-port", type=int, default=None,
        help="serve /metrics on this port, 0 = off (default: AGGREGATOR_METRICS_PORT)",
    )
    parser.add_argument(
        "--check", action="store_true",
        help="exit 1 unless the named worker(s), or else at least --workers workers, have a fresh heartbeat",
    )
    parser.add_argument("--shard-map", action="store_true",
                        help="print which Redis master holds which shard, then exit")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.check:
        return check(settings, args.name, args.workers)
    if args.shard_map:
        from aggregator.shardmap import render, shard_map

        print(render(shard_map(open_sync(settings.redis_url, attempts=3), settings)))
        return 0
    port = settings.aggregator_metrics_port if args.metrics_port is None else args.metrics_port
    if args.workers > 1:
        base = args.name or default_consumer_name()
        return Supervisor(args.workers, base, args.burst, port).run()
    client = open_sync(settings.redis_url)
    worker = Worker(client, settings, consumer=args.name)
    worker.install_signal_handlers()
    if port:
        metrics.serve(port, client, settings)
    logging.getLogger("aggregator").info("worker %s reading %d shards", worker.consumer, len(worker.shards))
    worker.run(burst=args.burst)
    return 0


def check(settings: Settings, name: str | None, workers: int) -> int:
    names = [] if not name else [name] if workers <= 1 else [f"{name}-{i}" for i in range(workers)]
    try:
        client = open_sync(settings.redis_url, attempts=3)
        problems = stale_workers(client, settings, names, at_least=max(workers, 1))
    except (redis.RedisError, OSError) as exc:
        problems = [f"redis unavailable: {exc.__class__.__name__}"]
    for problem in problems:
        print(f"stale: {problem}", file=sys.stderr)
    if not problems:
        print(f"ok: {', '.join(names) if names else f'{max(workers, 1)} worker(s)'} alive")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
