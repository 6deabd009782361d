"""Test helpers for the workers: write stream entries in the collector's format, read KPIs back.

Entries are built from ``StoredEvent`` exactly as the collector stores them (field ``n`` the
count, field ``e`` a msgpack list), so worker tests control ``ts`` and ``received`` precisely.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

import redis

from schemas import keyspace
from schemas.catalog import STORED_ENCODER, STORED_LIST_DECODER, StoredEvent
from schemas.settings import Settings

HOUR_MS = 3_600_000


def now_ms() -> int:
    return int(time.time() * 1000)


def stored(
    name: str, village: str, ts: int, received: int | None = None, session: str | None = None
) -> StoredEvent:
    return StoredEvent(
        event_id=uuid.uuid4().hex, name=name, version=1, ts=ts, ts_original=ts,
        received=ts if received is None else received, village=village, app_version="1.0",
        platform="web", session=session,
    )


def entry_fields(events: list[StoredEvent]) -> dict[str, bytes | int]:
    """A stream entry's fields, as append.lua writes them."""
    return {keyspace.ENTRY_COUNT: len(events), keyspace.ENTRY_EVENTS: STORED_ENCODER.encode(events)}


def append(r: redis.Redis, settings: Settings, events: Iterable[StoredEvent]) -> dict[int, list[str]]:
    """One entry per shard (events partitioned by village, as the collector does); returns ids."""
    by_shard: dict[int, list[StoredEvent]] = {}
    for ev in events:
        by_shard.setdefault(keyspace.shard_of(ev.village, settings.stream_shards), []).append(ev)
    ids: dict[int, list[str]] = {}
    for shard, evs in by_shard.items():
        eid = r.xadd(keyspace.stream(shard), entry_fields(evs))  # type: ignore[arg-type]
        ids.setdefault(shard, []).append(eid.decode())
    return ids


def append_raw(r: redis.Redis, shard: int, fields: dict[str, bytes | int]) -> str:
    return str(r.xadd(keyspace.stream(shard), fields).decode())  # type: ignore[arg-type]


def count(r: redis.Redis, settings: Settings, event_name: str, day: str) -> int:
    return sum(
        int(r.hget(keyspace.counts(s, day), event_name) or 0) for s in range(settings.stream_shards)
    )


def stat(r: redis.Redis, settings: Settings, field: str) -> int:
    return sum(
        int(r.hget(keyspace.shard_stats(s), field) or 0) for s in range(settings.stream_shards)
    )


def pending_of(r: redis.Redis, settings: Settings, consumer: str | None = None) -> int:
    total = 0
    for s in range(settings.stream_shards):
        try:
            summary = r.xpending(keyspace.stream(s), settings.consumer_group)
        except redis.ResponseError:
            continue
        for c in summary["consumers"]:
            if consumer is None or c["name"].decode() == consumer:
                total += int(c["pending"])
    return total


def dead_letters(r: redis.Redis, settings: Settings) -> list[dict[bytes, bytes]]:
    out = []
    for s in range(settings.stream_shards):
        out += [fields for _, fields in r.xrange(keyspace.worker_dead_letter(s))]
    return out


def late_events(r: redis.Redis, settings: Settings) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    for s in range(settings.stream_shards):
        for _, fields in r.xrange(keyspace.late_stream(s)):
            out += STORED_LIST_DECODER.decode(fields[keyspace.ENTRY_EVENTS_B])
    return out


def read_as(r: redis.Redis, settings: Settings, consumer: str, count: int = 1000) -> list[tuple[str, list]]:
    """What a worker does right before it dies: take entries from the group, apply nothing."""
    reply = []
    for shard in range(settings.stream_shards):  # one read per shard: a cluster's slots differ
        name = keyspace.stream(shard)
        for _, entries in r.xreadgroup(settings.consumer_group, consumer, {name: ">"}, count=count) or []:
            if entries:
                reply.append((name, entries))
    return reply
