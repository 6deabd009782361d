"""Synthetic villages: sessions with dialogue opens and command executions, sent to the collector.

``analytics-simulate --url http://127.0.0.1:5000 --write-key KEY`` plays villages at a steady,
bounded rate (``--rate`` sessions a second, about seven events each) until ``--seconds``;
``generate()`` is also what the tests use to build traffic whose ground truth they compute.
"""

from __future__ import annotations

import argparse
import random
import time
import uuid
from datetime import datetime, timezone
from typing import Any

COMMANDS = ("build", "harvest", "trade", "recruit", "upgrade", "explore")
DIALOGUES = ("elder", "merchant", "blacksmith", "quest_board", "tutorial")
PLATFORMS = ("ios", "android", "web")


def iso(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def event(name: str, village: str, ts_ms: int, session: str | None, payload: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event_name": name,
        "event_version": 1,
        "ts_utc": iso(ts_ms),
        "client_ts": iso(ts_ms),
        "anon_village_id": village,
        "app_version": "1.4.2",
        "platform": rng.choice(PLATFORMS),
        "payload": payload,
    }
    if session is not None:
        ev["session_id"] = session
    return ev


def sample_duration(rng: random.Random) -> int:
    """Session length in ms: log-normal, median about 4.5 minutes, capped at 4 hours."""
    return max(1_000, min(int(rng.lognormvariate(12.5, 0.8)), 4 * 3_600_000))


def session_events(village: str, start_ms: int, rng: random.Random, duration_ms: int | None = None) -> list[dict[str, Any]]:
    """One session: start, a heartbeat, some dialogues and commands, end."""
    sid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    duration = duration_ms if duration_ms is not None else sample_duration(rng)
    out = [
        event("session_start", village, start_ms, sid, {}, rng),
        event("village_active", village, start_ms + 1, sid, {"kind": "heartbeat"}, rng),
    ]
    for _ in range(rng.randint(0, 4)):
        out.append(event("dialogue_open", village, start_ms + rng.randint(1, duration - 1), sid,
                         {"dialogue_id": rng.choice(DIALOGUES)}, rng))
    for _ in range(rng.randint(0, 6)):
        out.append(event("command_executed", village, start_ms + rng.randint(1, duration - 1), sid,
                         {"command": rng.choice(COMMANDS), "success": rng.random() > 0.1}, rng))
    out.append(event("session_end", village, start_ms + duration, sid, {"reason": "background"}, rng))
    return out


def generate(villages: int, sessions: int, start_ms: int, end_ms: int, seed: int) -> list[dict[str, Any]]:
    """Events of ``sessions`` sessions spread over ``villages`` villages, starting in [start, end)."""
    rng = random.Random(seed)
    names = [f"village-{seed}-{i}" for i in range(villages)]
    events: list[dict[str, Any]] = []
    for _ in range(sessions):
        begin = rng.randint(start_ms, end_ms - 1)
        events.extend(session_events(rng.choice(names), begin, rng))
    return events


def batch(events: list[dict[str, Any]], sent_at_ms: int | None = None) -> dict[str, Any]:
    return {
        "batch_id": str(uuid.uuid4()),
        "sent_at": iso(sent_at_ms if sent_at_ms is not None else int(time.time() * 1000)),
        "events": events,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="analytics-simulate")
    parser.add_argument("--url", required=True, help="collector base URL")
    parser.add_argument("--write-key", required=True)
    parser.add_argument("--villages", type=int, default=200)
    parser.add_argument("--rate", type=float, default=2.0, help="sessions per second (default 2)")
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0 = forever)")
    parser.add_argument("--backfill-hours", type=float, default=40,
                        help="first send sessions spread over the past N hours, so charts have history (0: none)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    names = [f"sim-village-{i}" for i in range(args.villages)]
    deadline = time.monotonic() + args.seconds if args.seconds else None
    from analytics_client import Client  # sent through the Python SDK, as our users send

    client = Client(args.url, args.write_key, flush_at=500, flush_interval=1.0, max_queue_size=200_000)
    try:
        now = int(time.time() * 1000)
        span = int(args.backfill_hours * 3_600_000)
        if span > 5 * 3_600_000:  # history ends 5 h ago: its sessions (up to 4 h) are all over
            history = [e for _ in range(int(args.rate * 60))
                       for e in session_events(rng.choice(names), now - span + rng.randint(0, span - 5 * 3_600_000), rng)]
            _send(client, history)
        step = 1.0 / max(args.rate, 0.01)
        next_at = time.monotonic()
        while deadline is None or time.monotonic() < deadline:
            now = int(time.time() * 1000)
            d = sample_duration(rng)  # a session that just ended, so every event is in the past
            _send(client, session_events(rng.choice(names), now - d - rng.randint(0, 60_000), rng, d))
            next_at += step  # a fixed schedule: the rate stays steady whatever a send costs
            time.sleep(max(0.0, next_at - time.monotonic()))
    finally:
        client.close()


def _send(client: Any, events: list[dict[str, Any]]) -> None:
    for ev in events:
        client.enqueue(ev)


if __name__ == "__main__":
    main()
