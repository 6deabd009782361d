"""``analytics-deadletter list|count|replay``: operate on the dead-letter stream.

    analytics-deadletter count [--reason R] [--event NAME]
    analytics-deadletter list [--reason R] [--event NAME] [--limit N]    (JSON lines)
    analytics-deadletter replay [--reason R] [--event NAME] [--dry-run]  (after a catalog fix)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from collector import deadletter
from infra.progress import Progress
from infra.connection import open_async
from schemas.settings import Settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="analytics-deadletter", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("list", "count", "replay"):
        p = sub.add_parser(name)
        p.add_argument("--reason", help="only entries with this reason (e.g. invalid, future)")
        p.add_argument("--event", help="only entries of this event name")
        if name == "list":
            p.add_argument("--limit", type=int, default=100)
        if name == "replay":
            p.add_argument("--dry-run", action="store_true", help="validate only, store nothing")
    return parser


async def run(argv: list[str], settings: Settings) -> int:
    args = _parser().parse_args(argv)
    client = await open_async(settings.redis_url)
    try:
        if args.command == "count":
            found = await deadletter.count(client, args.reason, args.event, deadletter.sources(settings))
            print(json.dumps(found))
        elif args.command == "list":
            shown = 0
            streams = deadletter.sources(settings)
            async for entry in deadletter.entries(client, args.reason, args.event, streams=streams):
                if shown >= args.limit:
                    break
                print(json.dumps(entry.summary()))
                shown += 1
        else:
            found = await deadletter.count(client, args.reason, args.event, deadletter.sources(settings))
            with Progress("replay", found["total"], unit="entries") as progress:
                report = await deadletter.replay(
                    client, settings, args.reason, args.event, args.dry_run, progress
                )
            print(json.dumps({
                "replayed": report.replayed,
                "duplicates": report.duplicates,
                "still_failing": len(report.still_failing),
                "dry_run": args.dry_run,
            }))
            for failing in report.still_failing[:100]:
                print(json.dumps(failing), file=sys.stderr)
    finally:
        await client.aclose()
    return 0


def main(argv: list[str] | None = None) -> None:
    raise SystemExit(asyncio.run(run(sys.argv[1:] if argv is None else argv, Settings.from_env())))


if __name__ == "__main__":
    main()
