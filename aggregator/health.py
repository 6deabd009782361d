"""``--check``: are the workers alive? Judged by their heartbeat keys, which expire when they stop."""

from __future__ import annotations

import time

import msgspec
import redis

from schemas import keyspace
from schemas.settings import Settings


def stale_workers(client: redis.Redis, settings: Settings, names: list[str], at_least: int = 1) -> list[str]:
    """Problems found, empty when healthy.

    With ``names``, each named consumer must have a fresh heartbeat; without, at least
    ``at_least`` workers must (a worker that stopped or hung lets its key expire after
    ``heartbeat_ttl_seconds``).
    """
    now_ms = int(time.time() * 1000)
    limit_ms = settings.heartbeat_ttl_seconds * 1000
    if not names:
        found = [k.decode() for k in client.scan_iter(match=keyspace.HEARTBEAT_PATTERN, count=1000)]
        prefix = keyspace.heartbeat("")
        names = [k[len(prefix):] for k in found]
        if len(names) < at_least:
            return [f"{len(names)} worker(s) with a heartbeat, {at_least} expected"]
    problems = []
    pipe = client.pipeline(transaction=False)  # one GET per key: a cluster spreads them over slots
    for n in names:
        pipe.get(keyspace.heartbeat(n))
    for name, raw in zip(names, pipe.execute() if names else []):
        if raw is None:
            problems.append(f"{name}: no heartbeat within {settings.heartbeat_ttl_seconds} s")
            continue
        try:
            at = int(msgspec.json.decode(raw)["at"])
        except (msgspec.DecodeError, KeyError, TypeError, ValueError):
            problems.append(f"{name}: unreadable heartbeat {raw!r}")
            continue
        if now_ms - at > limit_ms:
            problems.append(f"{name}: last heartbeat {(now_ms - at) / 1000:.1f} s ago")
    return problems
