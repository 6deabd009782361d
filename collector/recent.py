"""``GET /internal/analytics/debug/recent-events``: the last accepted events, for admins (seed 003).

The buffer (``keyspace.recent``) is written by ``append.lua`` with the events exactly as stored:
pseudonymised, payloads reduced to the catalog's allow-list. Entries older than the buffer's TTL
are not shown, even when the list itself has not expired yet.
"""

from __future__ import annotations

import time

import msgspec
import redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from collector.auth import admin_only
from schemas import keyspace
from schemas.catalog import StoredEvent
from infra.service import error

_DECODE = msgspec.msgpack.Decoder(StoredEvent)
FIELDS = StoredEvent.__struct_fields__


async def recent_events(request: Request) -> Response:
    settings = request.app.state.settings
    refused = admin_only(request, settings)
    if refused is not None:
        return refused
    raw_limit = request.query_params.get("limit", "")
    size = max(settings.debug_buffer_size, 0)
    limit = int(raw_limit) if raw_limit.isdigit() else size
    limit = min(limit, size)
    try:
        async with request.app.state.redis.pipeline(transaction=False) as pipe:
            for shard in range(settings.stream_shards):
                pipe.lrange(keyspace.recent(shard), 0, size - 1)
            lists = await pipe.execute()
    except (redis.RedisError, OSError):
        return error(503, "store_unavailable", "event store unavailable, retry", {"Retry-After": "1"})
    oldest = int(time.time() * 1000) - settings.debug_buffer_ttl_seconds * 1000
    events = [_DECODE.decode(item) for items in lists for item in items]
    events = sorted((e for e in events if e.received >= oldest), key=lambda e: -e.received)
    shown = [
        {**{f: getattr(e, f) for f in FIELDS}, "server_received_ts": e.received}
        for e in events[:limit]
    ]
    return JSONResponse({"events": shown, "ttl_seconds": settings.debug_buffer_ttl_seconds})
