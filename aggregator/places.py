"""Every place raw events rest in Redis, read entry by entry, and rewritten without them.

Places: each shard's event stream (read by the workers' consumer group), late stream and worker
dead-letter stream (bodies of ``StoredEvent`` msgpack lists), the collector's dead-letter stream
(one redacted rejection per entry) and each shard's debug buffer (a list of single events, written
by older versions only: the recent-events route now reads the streams, so a list left behind
expires within ``DEBUG_BUFFER_TTL_SECONDS``; erasure still cleans it until then).
``rewrite`` removes chosen events from stream entries atomically per stream (``rewrite.lua``):
an entry left with none is deleted, one with some kept is replaced by a new entry holding them,
marked so that the workers never apply an event twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import redis

from collector.store import entry as entry_body
from schemas import keyspace
from schemas.keyspace import ENTRY_EVENTS_B, ENTRY_REASON_B
from schemas.catalog import STORED_ENCODER, STORED_LIST_DECODER, StoredEvent, compact
from schemas.settings import Settings

REWRITE_LUA = Path(__file__).with_name("rewrite.lua").read_text()
PAGE = 500
_ONE = msgspec.msgpack.Decoder(StoredEvent)


@dataclass(frozen=True)
class Place:
    kind: str  # events, late, deadletter (per shard), rejections (the collector's), recent
    key: str
    shard: int | None = None
    group: str = ""  # the consumer group that applies this stream's entries

    @property
    def name(self) -> str:
        return self.kind if self.shard is None else f"{self.kind}:s{self.shard}"


def streams(settings: Settings) -> list[Place]:
    """The streams of stored events, per shard."""
    out = []
    for shard in range(settings.stream_shards):
        out.append(Place("events", keyspace.stream(shard), shard, settings.consumer_group))
        out.append(Place("late", keyspace.late_stream(shard), shard))
        out.append(Place("deadletter", keyspace.worker_dead_letter(shard), shard))
    return out


REJECTIONS = Place("rejections", keyspace.DEAD_LETTER)


def buffers(settings: Settings) -> list[Place]:
    """The debug-buffer lists older versions wrote (``keyspace.recent``), per shard."""
    return [Place("recent", keyspace.recent(s), s) for s in range(settings.stream_shards)]


@dataclass
class Entry:
    id: str
    fields: dict[bytes, bytes]
    events: list[StoredEvent] | None = None  # None: undecodable (or not a stored-events entry)
    record: dict[str, Any] = field(default_factory=dict)  # a dead letter's JSON record

    @property
    def ms(self) -> int:
        return int(self.id.split("-", 1)[0])


def decode(fields: dict[bytes, bytes]) -> list[StoredEvent] | None:
    body = fields.get(ENTRY_EVENTS_B)
    if body is None:
        return None
    try:
        return STORED_LIST_DECODER.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def entries(client: redis.Redis, place: Place, decoded: bool = True,
            contains: tuple[bytes, ...] = ()) -> Iterator[Entry]:
    """The stream's entries, oldest first, in pages. ``contains``: only entries whose raw fields
    hold one of these byte strings (a cheap filter before decoding)."""
    start = "-"
    while True:
        page = client.xrange(place.key, min=start, max="+", count=PAGE)
        for raw_id, fields in page:
            eid = raw_id.decode()
            if contains and not any(c in v for v in fields.values() for c in contains):
                continue
            e = Entry(eid, fields)
            if ENTRY_REASON_B in fields:
                try:
                    record = msgspec.json.decode(fields[ENTRY_REASON_B])
                    e.record = record if isinstance(record, dict) else {}
                except msgspec.DecodeError:
                    pass
            if decoded and ENTRY_EVENTS_B in fields:
                e.events = decode(fields)
            yield e
        if len(page) < PAGE:
            return
        last = page[-1][0].decode()
        ms, seq = last.split("-")
        start = f"{ms}-{int(seq) + 1}"


def body(events: list[StoredEvent]) -> bytes:
    return entry_body([STORED_ENCODER.encode(compact(ev)) for ev in events])


def rewrite(client: redis.Redis, place: Place, kept: dict[str, list[StoredEvent]]) -> int:
    """Remove entries (``kept[id] == []``) or replace them by their kept events; returns the
    entries removed. One atomic script per stream, in chunks."""
    script = client.register_script(REWRITE_LUA)
    removed = 0
    items = list(kept.items())
    for start in range(0, len(items), 200):
        args: list[Any] = [place.group]
        for eid, events in items[start:start + 200]:
            args += [eid, body(events) if events else b"", len(events)]
        removed += int(script(keys=[place.key], args=args))
    return removed


def buffer_items(client: redis.Redis, place: Place) -> list[tuple[bytes, StoredEvent | None]]:
    out = []
    for item in client.lrange(place.key, 0, -1):
        try:
            out.append((item, _ONE.decode(item)))
        except (msgspec.DecodeError, msgspec.ValidationError):
            out.append((item, None))
    return out
