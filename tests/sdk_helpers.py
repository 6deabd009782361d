"""Helpers for the SDK tests: what the collector stored, read straight from the shard streams."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import redis

from schemas import keyspace
from schemas.catalog import STORED_LIST_DECODER, StoredEvent
from schemas.settings import Settings


def stored_events(r: redis.Redis, settings: Settings) -> list[StoredEvent]:
    out: list[StoredEvent] = []
    for s in range(settings.stream_shards):
        for _id, fields in r.xrange(keyspace.stream(s)):
            out += STORED_LIST_DECODER.decode(fields[b"e"])
    return out


def stored_ids(r: redis.Redis, settings: Settings) -> Counter[str]:
    """How many times each event_id (as the client wrote it, a dashed UUID) is in the streams."""
    return Counter(str(uuid.UUID(str(ev.event_id))) for ev in stored_events(r, settings))


def wait_stored(r: redis.Redis, settings: Settings, count: int, timeout: float = 60.0) -> Counter[str]:
    """Wait until at least ``count`` events are stored; returns the id counts."""
    deadline = time.monotonic() + timeout
    while True:
        ids = stored_ids(r, settings)
        if sum(ids.values()) >= count or time.monotonic() > deadline:
            return ids
        time.sleep(0.1)
