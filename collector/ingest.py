"""``POST /api/analytics/events``: the native batch route, and the path every other route reuses.

Other routes reuse its two halves: ``admit`` (opt-out, auth, rate limits, backpressure) and
``accept`` (clock-skew correction, validation, pseudonymisation, atomic append, dead-letter).
Nothing here logs a body, an identifier or an address.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

import msgspec
import redis
from redis.exceptions import RedisClusterException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from collector import metrics
from collector.auth import authenticate
from collector.body import BodyError, read_body
from collector.store import NotDurable
from schemas.catalog import Batch
from schemas.days import to_ms
from schemas.service import error
from schemas.settings import Settings

log = logging.getLogger("collector.ingest")
_BATCH = msgspec.json.Decoder(Batch)


def opted_out(request: Request) -> bool:
    return (
        not request.app.state.settings.analytics_enabled
        or request.headers.get("x-analytics-opt-out", "").strip() == "1"
        or request.headers.get("dnt", "").strip() == "1"
    )


STORE_ERRORS = (redis.RedisError, OSError, RedisClusterException)


def store_unavailable(exc: BaseException) -> Response:
    metrics.REDIS_ERRORS.inc()
    log.warning("store unavailable: %s: %s", exc.__class__.__name__, str(exc)[:200])
    if isinstance(exc, NotDurable):
        return error(503, "not_durable", f"{exc}; retry", {"Retry-After": "1"})
    return error(503, "store_unavailable", "event store unavailable, retry", {"Retry-After": "1"})


async def admit(request: Request, public: bool = False) -> Response | None:
    """The whole-request checks before the body is read: a response to send, or None to go on.

    ``public``: a request without credentials may write too (seed 002's keyless route, under
    ``ANALYTICS_PUBLIC_INGEST``); credentials it does send must still be valid.
    """
    state = request.app.state
    if opted_out(request):
        metrics.OPT_OUTS.inc()
        return Response(status_code=204)
    subject, denied = authenticate(request, state.settings)
    if denied and public and not (
        request.headers.get("authorization") or request.headers.get("x-write-key")
    ):
        denied = None
    # the client IP is counted even for a failed login, so keys cannot be guessed at speed
    subjects = [("ip", request.client.host if request.client else "unknown")]
    if subject is not None:
        subjects.append(("subject", subject))
    try:
        retry_after = await state.ratelimit.over(subjects, int(time.time() * 1000))
        pressure = None if denied or retry_after else await state.backpressure.reason()
    except STORE_ERRORS as exc:
        return store_unavailable(exc)
    if retry_after is not None:
        metrics.RATE_LIMITED.inc()
        return error(
            429, "rate_limited",
            f"over RATE_LIMIT_PER_MINUTE={state.settings.rate_limit_per_minute}",
            {"Retry-After": str(retry_after)},
        )
    if denied:
        return error(401, "unauthorized", denied, {"WWW-Authenticate": 'Basic realm="analytics"'})
    if pressure is not None:
        metrics.BACKPRESSURE.inc()
        return error(503, "backpressure", pressure, {"Retry-After": "5"})
    return None


def import_marker_ttl(settings: Settings) -> int:
    """Seconds an imported event's idempotency marker lasts: the retention period (or a year)."""
    days = settings.analytics_retention_days if settings.analytics_retention_days > 0 else 365
    return days * 86_400


@dataclass
class Result:
    accepted: int = 0
    duplicates: int = 0
    late: int = 0  # of the accepted: already past the late window, stored but never counted
    rejected: list[dict[str, object]] = field(default_factory=list)

    def body(self) -> dict[str, object]:
        return {
            "accepted": self.accepted, "duplicates": self.duplicates, "late": self.late,
            "rejected": self.rejected,
        }


async def accept(
    request: Request,
    raw_events: list[msgspec.Raw],
    sent_at: datetime | None,
    historical: bool = False,
    client: dict[str, str] | None = None,
    sizes: list[int] | None = None,
) -> Result | Response:
    """Validate and store a batch's events; a 503 response when the store fails (nothing 2xx).

    ``historical`` (the admin import path) marks the events as exempt from the late window and
    keeps their idempotency markers for the retention period. ``client`` (``client_info``: a
    masked IP and User-Agent families) is stored with each event, for routes that record it;
    ``sizes`` are the events' sizes as sent, for routes that translate them (see ``Validator.run``).
    """
    state = request.app.state
    settings = state.settings
    received = int(time.time() * 1000)
    skew = 0
    if sent_at is not None:
        # Segment's correction: ts = received - (sent_at - ts_utc), beyond a small tolerance
        offset = received - to_ms(sent_at)
        if abs(offset) > settings.skew_tolerance_seconds * 1000:
            skew = offset
    try:
        outcome = await state.validator.run(raw_events, received, skew, historical, client, sizes)
        marker_ttl = import_marker_ttl(settings) if historical else None
        flags = await state.store.write(outcome.by_shard, outcome.rejections, marker_ttl)
    except STORE_ERRORS as exc:
        return store_unavailable(exc)
    result = Result()
    result.accepted = sum(sum(f) for f in flags.values())
    result.duplicates = sum(len(f) for f in flags.values()) - result.accepted
    result.late = sum(flags[shard][i] for shard, positions in outcome.late.items() for i in positions)
    result.rejected = [
        {"index": r.index, "event_id": r.event_id, "errors": r.errors} for r in outcome.rejections
    ]
    metrics.ACCEPTED.inc(result.accepted)
    metrics.DUPLICATES.inc(result.duplicates)
    metrics.LATE.inc(result.late)
    metrics.BATCH_SIZE.observe(len(raw_events))
    for r in outcome.rejections:
        metrics.REJECTED.labels(r.reason).inc()
    return result


async def read_batch(request: Request) -> Batch | Response:
    """The request's batch, or the 400/413/415 that refuses it."""
    settings = request.app.state.settings
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        return error(
            415, "unsupported_media_type", f"Content-Type {ctype[:64] or 'none'!r}: use application/json"
        )
    try:
        body = await read_body(request, settings.max_body_bytes)
    except BodyError as exc:
        return error(exc.status, exc.code, exc.detail)
    except ClientDisconnect:
        # normal on the internet (a phone losing signal): one line and a count, nothing stored
        metrics.DISCONNECTS.inc()
        log.info("client disconnected before its body was read")
        return error(400, "client_disconnected", "the client went away before its body was read")
    try:
        batch = _BATCH.decode(body)
    except msgspec.ValidationError as exc:
        return error(400, "malformed", f"batch: {exc}")
    except (msgspec.DecodeError, RecursionError) as exc:
        return error(400, "malformed", f"body is not valid JSON: {exc}")
    if len(batch.events) > settings.max_batch_size:
        return error(
            413, "batch_too_large",
            f"{len(batch.events)} events, over MAX_BATCH_SIZE={settings.max_batch_size}",
        )
    return batch


async def receive(request: Request, historical: bool = False) -> Response:
    """The admitted request's batch through ``accept``: 202 with the result, or what refused it."""
    batch = await read_batch(request)
    if isinstance(batch, Response):
        return batch
    result = await accept(request, batch.events, batch.sent_at, historical)
    if isinstance(result, Response):
        return result
    return JSONResponse(result.body(), status_code=202)


async def ingest(request: Request) -> Response:
    refused = await admit(request)
    return refused if refused is not None else await receive(request)
