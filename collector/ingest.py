"""``POST /api/analytics/events``: the native batch route, and the path every other route reuses."""

from __future__ import annotations

import logging
import time

import msgspec
import redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from collector import metrics
from collector.auth import check_write_access
from collector.body import BodyError, read_body
from schemas.catalog import Batch
from schemas.days import to_ms
from schemas.service import error

log = logging.getLogger("collector.ingest")
_BATCH = msgspec.json.Decoder(Batch)


def opted_out(request: Request) -> bool:
    return (
        not request.app.state.settings.analytics_enabled
        or request.headers.get("x-analytics-opt-out", "").strip() == "1"
        or request.headers.get("dnt", "").strip() == "1"
    )


async def ingest(request: Request) -> Response:
    settings = request.app.state.settings
    if opted_out(request):
        metrics.OPT_OUTS.inc()
        return Response(status_code=204)
    denied = check_write_access(request, settings)
    if denied:
        return error(401, "unauthorized", denied, {"WWW-Authenticate": 'Basic realm="analytics"'})
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        return error(415, "unsupported_media_type", f"Content-Type {ctype or 'none'!r}: use application/json")
    try:
        body = await read_body(request, settings.max_body_bytes)
    except BodyError as exc:
        return error(exc.status, exc.code, exc.detail)
    try:
        batch = _BATCH.decode(body)
    except msgspec.ValidationError as exc:
        return error(400, "malformed", f"batch: {exc}")
    except msgspec.DecodeError as exc:
        return error(400, "malformed", f"body is not valid JSON: {exc}")
    if len(batch.events) > settings.max_batch_size:
        return error(
            413, "batch_too_large",
            f"{len(batch.events)} events, over MAX_BATCH_SIZE={settings.max_batch_size}",
        )
    received = int(time.time() * 1000)
    skew = 0
    if batch.sent_at is not None:
        offset = received - to_ms(batch.sent_at)
        if abs(offset) > settings.skew_tolerance_seconds * 1000:
            skew = offset
    outcome = await request.app.state.validator.run(batch.events, received, skew)
    try:
        flags = await request.app.state.store.write(outcome.by_shard, outcome.rejections)
    except (redis.RedisError, OSError) as exc:
        metrics.REDIS_ERRORS.inc()
        log.warning("store unavailable: %s", exc.__class__.__name__)
        return error(503, "store_unavailable", "event store unavailable, retry", {"Retry-After": "1"})
    accepted = sum(sum(f) for f in flags.values())
    duplicates = sum(len(f) for f in flags.values()) - accepted
    metrics.ACCEPTED.inc(accepted)
    metrics.DUPLICATES.inc(duplicates)
    metrics.REJECTED.inc(len(outcome.rejections))
    return JSONResponse(
        {
            "accepted": accepted,
            "duplicates": duplicates,
            "rejected": [
                {"index": r.index, "event_id": r.event_id, "errors": r.errors}
                for r in outcome.rejections
            ],
        },
        status_code=202,
    )
