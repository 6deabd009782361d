"""``GET /internal/analytics/debug/recent-events``: the last accepted events, for admins (seed 003).

A view of the newest entries of the shard streams (``keyspace.stream``), where ``append.lua``
stores the events exactly as kept: pseudonymised, payloads reduced to the catalog's allow-list,
duplicates never. No other copy of them is kept. The newest ``DEBUG_BUFFER_SIZE`` events of each
shard count (by arrival: entry ids, then an entry's events from its last), except those that
arrived (``received``) more than ``DEBUG_BUFFER_TTL_SECONDS`` ago; the answer holds the newest
``limit`` of them (at most, and by default, the size), sorted by ``received``, so each shard is
read for ``limit`` events at most.

The work is bounded: each shard is read backwards with ``XREVRANGE`` in pages that grow from a
few entries (one command per shard and page, in one pipeline per round: no cross-slot command on
a cluster), and no further once it has the events it needs, reached an entry older than the TTL
or read ``MAX_ENTRIES`` entries (entries rewritten by an erasure are appended at the stream's end
with their old events, which the TTL filter drops).
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aggregator.places import decode as stored_events
from collector.auth import admin_only
from collector.ingest import STORE_ERRORS, store_unavailable
from schemas import keyspace
from schemas.catalog import StoredEvent

FIELDS = StoredEvent.__struct_fields__
MAX_SIZE = 1000  # events per shard at most, whatever DEBUG_BUFFER_SIZE says
FIRST_PAGE = 16  # entries of a shard's first XREVRANGE; each next page doubles, up to LAST_PAGE
LAST_PAGE = 256
MAX_ENTRIES = 5000  # entries read per shard and request at most


class _Tail:
    """One shard stream read backwards: the events kept so far, newest first."""

    def __init__(self, shard: int, want: int) -> None:
        self.key = keyspace.stream(shard)
        self.want = want
        self.events: list[StoredEvent] = []
        self.before = "+"  # XREVRANGE's upper bound: entries older than the last one read
        self.read = 0
        self.page = FIRST_PAGE
        self.done = False

    def count(self) -> int:
        """Entries of the next page: never more than the events still needed (each entry holds
        at least one)."""
        return max(1, min(self.page, self.want - len(self.events), MAX_ENTRIES - self.read))

    def take(self, entries: list[Any], asked: int, oldest: int) -> None:
        for raw_id, fields in entries:
            eid = raw_id.decode() if isinstance(raw_id, bytes) else raw_id
            fresh = [e for e in reversed(stored_events(fields) or ()) if e.received >= oldest]
            self.events += fresh[: self.want - len(self.events)]
            # an entry older than the TTL: the entries before it arrived earlier still
            if len(self.events) >= self.want or (int(eid.split("-", 1)[0]) < oldest and not fresh):
                self.done = True
                return
            self.before = "(" + eid
        self.read += len(entries)
        self.page = min(self.page * 2, LAST_PAGE)
        self.done = len(entries) < asked or self.read >= MAX_ENTRIES


async def recent_events(request: Request) -> Response:
    settings = request.app.state.settings
    refused = admin_only(request, settings)
    if refused is not None:
        return refused
    raw_limit = request.query_params.get("limit", "")
    size = min(max(settings.debug_buffer_size, 0), MAX_SIZE)
    limit = int(raw_limit) if raw_limit.isdigit() else size
    limit = min(limit, size)
    ttl = settings.debug_buffer_ttl_seconds
    oldest = int(time.time() * 1000) - ttl * 1000
    # the newest ``limit`` of a shard are all it can contribute to the newest ``limit`` shown
    tails = [_Tail(shard, limit) for shard in range(settings.stream_shards)] if limit > 0 else []
    try:
        while active := [t for t in tails if not t.done]:
            counts = [t.count() for t in active]
            async with request.app.state.redis.pipeline(transaction=False) as pipe:
                for tail, n in zip(active, counts):
                    pipe.xrevrange(tail.key, max=tail.before, min="-", count=n)
                pages = await pipe.execute()
            for tail, n, entries in zip(active, counts, pages):
                tail.take(entries, n, oldest)
    except STORE_ERRORS as exc:  # a cluster failing mid-read too: a 503, never a 500
        return store_unavailable(exc)
    events = sorted((e for t in tails for e in t.events), key=lambda e: -e.received)
    shown = [
        {**{f: getattr(e, f) for f in FIELDS}, "server_received_ts": e.received}
        for e in events[:limit]
    ]
    return JSONResponse({"events": shown, "ttl_seconds": ttl})
