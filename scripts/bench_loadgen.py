"""A small asyncio HTTP/1.1 load generator for the collector (no client library in the hot path).

``closed`` mode: ``--connections`` keep-alive connections each send back to back (peak rate).
``open`` mode: requests are *scheduled* at ``--rate`` per second whatever the answers do, and
latency is measured from the scheduled time (no coordinated omission); extra connections open
when all are busy. Bodies come from a file of batch templates (one JSON body per line) whose
event ids start with ``@@@@@@@@``: each request stamps 8 fresh hex digits there, so no event is
ever a duplicate. Prints one JSON line with the counts and latency percentiles (ms).

    python -m scripts.bench_loadgen --port 8000 --bodies FILE --mode open --rate 300 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from scripts.bench_common import WRITE_KEY, percentile, stamp


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, head: bytes, body: bytes) -> int:
        self.writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return int(status_line.split()[1])


async def connect(port: int) -> Conn:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    return Conn(reader, writer)


async def main_async(args: argparse.Namespace) -> dict[str, object]:
    bodies = [line.rstrip(b"\n") for line in open(args.bodies, "rb") if line.strip()]
    head = (
        b"POST /api/analytics/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nX-Write-Key: " + WRITE_KEY.encode() + b"\r\n"
    )
    counter = 0
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    errors = 0

    def next_body() -> bytes:
        nonlocal counter
        counter += 1
        return stamp(bodies[counter % len(bodies)], (args.tid << 24) | (counter & 0xFFFFFF))

    start = time.perf_counter()
    deadline = start + args.seconds
    if args.mode == "closed":
        async def loop() -> None:
            nonlocal errors
            conn = await connect(args.port)
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    st = await conn.post(head, next_body())
                except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                    errors += 1
                    conn = await connect(args.port)
                    continue
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[st] = statuses.get(st, 0) + 1

        await asyncio.gather(*(loop() for _ in range(args.connections)))
    else:
        idle: list[Conn] = [await connect(args.port) for _ in range(args.connections)]
        tasks = []

        async def one(scheduled: float) -> None:
            nonlocal errors
            conn = idle.pop() if idle else await connect(args.port)
            try:
                st = await conn.post(head, next_body())
            except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
                errors += 1
                return
            latencies.append((time.perf_counter() - scheduled) * 1000)
            statuses[st] = statuses.get(st, 0) + 1
            idle.append(conn)

        total = int(args.rate * args.seconds)
        for i in range(total):
            scheduled = start + i / args.rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(scheduled)))
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    ok = sum(n for st, n in statuses.items() if 200 <= st < 300)
    return {
        "mode": args.mode,
        "seconds": elapsed,
        "requests": sum(statuses.values()),
        "ok": ok,
        "statuses": statuses,
        "errors": errors,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies) if latencies else float("nan"),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="bench_loadgen")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--bodies", required=True)
    p.add_argument("--mode", choices=("closed", "open"), default="closed")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--rate", type=float, default=100.0, help="requests per second (open mode)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--tid", type=int, default=1, help="id prefix (0-255): distinct per process and run")
    args = p.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args))), flush=True)


if __name__ == "__main__":
    main()
