"""``analytics-aggregator``: run consumer-group workers (``--burst`` drains and exits)."""

from __future__ import annotations

import argparse
import logging

from aggregator.worker import Worker
from schemas.connection import open_sync
from schemas.settings import Settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="analytics-aggregator")
    parser.add_argument("--name", help="stable consumer name (default: host-pid)")
    parser.add_argument("--burst", action="store_true", help="drain what is there, then exit")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    client = open_sync(settings.redis_url)
    worker = Worker(client, settings, consumer=args.name)
    worker.install_signal_handlers()
    logging.getLogger("aggregator").info("worker %s reading %d shards", worker.consumer, len(worker.shards))
    worker.run(burst=args.burst)


if __name__ == "__main__":
    main()
