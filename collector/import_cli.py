"""``analytics-import FILE``: load history older than the late window through the admin import path.

FILE holds one catalog event per line (JSON; ``-`` reads stdin). Events go in batches to
``POST /internal/analytics/import`` with an admin bearer token (``--token`` or
``ANALYTICS_ADMIN_TOKEN``). Running the same file again is answered as duplicates. Exits non-zero
when any event was rejected (each rejection is printed with its line number and reasons; the
dead-letter stream keeps them for ``analytics-deadletter``) or a request failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Iterator
from typing import Any, TextIO

import httpx

from infra.progress import Progress


def _batches(lines: TextIO, size: int) -> Iterator[tuple[list[int], list[Any]]]:
    """(line numbers, events) per batch; blank lines are skipped."""
    numbers: list[int] = []
    chunk: list[Any] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            chunk.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise SystemExit(f"line {number}: not JSON ({exc})") from None
        numbers.append(number)
        if len(chunk) == size:
            yield numbers, chunk
            numbers, chunk = [], []
    if chunk:
        yield numbers, chunk


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="analytics-import", description=__doc__.splitlines()[0])
    parser.add_argument("file", help="newline-delimited JSON events, or - for stdin")
    parser.add_argument("--url", default=os.environ.get("COLLECTOR_URL", "http://127.0.0.1:5000"),
                        help="collector base URL (default $COLLECTOR_URL or http://127.0.0.1:5000)")
    parser.add_argument("--token", default=os.environ.get("ANALYTICS_ADMIN_TOKEN"),
                        help="admin bearer JWT (default $ANALYTICS_ADMIN_TOKEN)")
    parser.add_argument("--batch", type=int, default=500, help="events per request (default 500)")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("an admin bearer token is required (--token or ANALYTICS_ADMIN_TOKEN)")
    stream = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    total = None
    if args.file != "-":  # a file can be counted first, for a bar with an end
        with open(args.file, encoding="utf-8") as counting:
            total = sum(1 for line in counting if line.strip())
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    headers = {"Authorization": f"Bearer {args.token}"}
    with stream, httpx.Client(base_url=args.url, headers=headers, timeout=60) as client, \
            Progress("import", total) as progress:
        for numbers, events in _batches(stream, max(1, args.batch)):
            body = {"batch_id": str(uuid.uuid4()), "events": events}
            resp = client.post("/internal/analytics/import", json=body)
            if resp.status_code != 202:
                print(f"lines {numbers[0]}-{numbers[-1]}: HTTP {resp.status_code} {resp.text[:300]}", file=sys.stderr)
                return 2
            result = resp.json()
            totals["accepted"] += result["accepted"]
            totals["duplicates"] += result["duplicates"]
            totals["rejected"] += len(result["rejected"])
            progress.advance(len(events), accepted=result["accepted"], duplicates=result["duplicates"],
                             rejected=len(result["rejected"]))
            for rej in result["rejected"]:
                print(f"line {numbers[rej['index']]}: {'; '.join(rej['errors'])}", file=sys.stderr)
    print(json.dumps(totals))
    return 1 if totals["rejected"] else 0


if __name__ == "__main__":
    sys.exit(main())
