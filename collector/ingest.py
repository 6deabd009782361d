"""``POST /api/analytics/events``: the native batch route, and the path every other route reuses.

Other routes reuse its two halves: ``admit`` (opt-out, auth, rate limits, backpressure) and
``accept`` (clock-skew correction, validation, pseudonymisation, atomic append, dead-letter).
Nothing here logs a body, an identifier or an address.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec
import redis
from redis.exceptions import RedisClusterException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from collector import metrics
from collector.auth import authenticate
from collector.body import BodyError, read_body
from collector.store import NotDurable
from collector.validate import Checked, Outcome
from schemas import keyspace
from schemas.catalog import Batch
from schemas.days import to_ms
from infra.service import error
from schemas.settings import Settings

log = logging.getLogger("collector.ingest")
_BATCH = msgspec.json.Decoder(Batch)


def opted_out(request: Request) -> str | None:
    """Why the request is dropped unread (disabled, opt_out header, dnt), or None."""
    if not request.app.state.settings.analytics_enabled:
        return "disabled"
    if request.headers.get("x-analytics-opt-out", "").strip() == "1":
        return "opt_out"
    if request.headers.get("dnt", "").strip() == "1":
        return "dnt"
    return None


STORE_ERRORS = (redis.RedisError, OSError, RedisClusterException)


def store_unavailable(exc: BaseException) -> Response:
    metrics.REDIS_ERRORS.inc()
    log.warning("store unavailable: %s: %s", exc.__class__.__name__, str(exc)[:200])
    if isinstance(exc, NotDurable):
        return error(503, "not_durable", f"{exc}; retry", {"Retry-After": "1"})
    return error(503, "store_unavailable", "event store unavailable, retry", {"Retry-After": "1"})


async def admit(
    request: Request, public: bool = False, body_key: str | None = None
) -> Response | None:
    """The whole-request checks before the body is read: a response to send, or None to go on.

    ``public``: a request without credentials may write too (seed 002's keyless route, under
    ``ANALYTICS_PUBLIC_INGEST``); credentials it does send must still be valid. ``body_key``: the
    write key in a body already read (Segment's ``writeKey``, see ``auth.authenticate``).
    """
    state = request.app.state
    reason = opted_out(request)
    if reason is not None:
        metrics.OPT_OUTS.inc()
        with contextlib.suppress(redis.RedisError, OSError):  # a count for the privacy report only
            await state.redis.hincrby(keyspace.OPT_OUTS, reason, 1)
        return Response(status_code=204)
    subject, denied = authenticate(request, state.settings, body_key)
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
    skew = 0 if sent_at is None else clock_skew(settings, received, to_ms(sent_at))
    try:
        outcome = await state.validator.run(raw_events, received, skew, historical, client, sizes)
        marker_ttl = import_marker_ttl(state.store.settings) if historical else None  # run-time retention
        flags = await state.store.write(outcome.by_shard, outcome.rejections, marker_ttl)
    except STORE_ERRORS as exc:
        return store_unavailable(exc)
    return _tally(outcome, flags, len(raw_events))


# an item mapped onto a catalog event: (index in the request, event JSON, client_info, skew ms)
Part = tuple[int, bytes, dict[str, str] | None, int]


async def accept_parts(
    request: Request,
    received: int,
    events: list[Part],
    refused: list[tuple[int, dict[str, object], str, str]],
    path: str = "$.events[{}]",
) -> Result | Response:
    """``accept`` for a request whose items were mapped onto catalog events first (Segment's API).

    ``events`` are ``(index in the request, catalog event JSON, client, skew)``: each item's own
    ``client_info`` and clock-skew correction (ms); ``refused`` are items the mapping could not
    turn into an event, as ``(index, what is known of the event, reason, error)``: both are
    dead-lettered like any rejection, redacted the same way. Errors and indices name the item's
    place in the request (``path.format(index)``).
    """
    state = request.app.state
    validator = state.validator
    groups: dict[tuple[int, tuple[tuple[str, str], ...]], list[Part]] = {}
    for item in events:  # one validator run per distinct client and skew (usually one a request)
        groups.setdefault((item[3], tuple(sorted((item[2] or {}).items()))), []).append(item)
    outcome = Outcome()
    try:
        for (skew, _), group in groups.items():
            part = await validator.run([msgspec.Raw(e) for _, e, _, _ in group], received, skew,
                                       client=group[0][2])
            for shard, items in part.by_shard.items():
                offset = len(outcome.by_shard.setdefault(shard, []))
                outcome.by_shard[shard] += items
                outcome.late.setdefault(shard, []).extend(offset + i for i in part.late.get(shard, []))
            for rej in part.rejections:
                index = group[rej.index][0]
                rej.errors = [e.replace(f"$.events[{rej.index}]", path.format(index), 1) for e in rej.errors]
                rej.index = index
                outcome.rejections.append(rej)
        for index, known, reason, detail in refused:
            name = known.get("event_name")
            checked = Checked(errors=[path.format(index) + detail], reason=reason,
                              name=name if isinstance(name, str) else None)
            outcome.rejections.append(await validator.rejection(
                index, msgspec.json.encode(known), checked, received, 0
            ))
        outcome.rejections.sort(key=lambda r: r.index)
        flags = await state.store.write(outcome.by_shard, outcome.rejections)
    except STORE_ERRORS as exc:
        return store_unavailable(exc)
    return _tally(outcome, flags, len(events) + len(refused))


def clock_skew(settings: Settings, received: int, sent_at: int) -> int:
    """Milliseconds to add to a client's event times: Segment's correction,
    ``ts = received - (sent_at - ts)``, applied beyond ``SKEW_TOLERANCE_SECONDS``."""
    offset = received - sent_at
    return offset if abs(offset) > settings.skew_tolerance_seconds * 1000 else 0


def _tally(outcome: Outcome, flags: dict[int, list[int]], size: int) -> Result:
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
    metrics.BATCH_SIZE.observe(size)
    for r in outcome.rejections:
        metrics.REJECTED.labels(r.reason).inc()
    return result


def client_gone() -> Response:
    """The answer (never read) to a client that went away mid-body: normal on the internet (a
    phone losing signal), so one line and a count, nothing stored."""
    metrics.DISCONNECTS.inc()
    log.info("client disconnected before its body was read")
    return error(400, "client_disconnected", "the client went away before its body was read")


async def read_json(request: Request, decoder: msgspec.json.Decoder[Any], shape: str) -> tuple[Any, bytes] | Response:
    """The request's JSON body decoded (with the raw bytes), or the 400/413/415 that refuses it:
    the one body step of every JSON ingest route. ``shape`` names what the body must be."""
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
        return client_gone()
    try:
        return decoder.decode(body), body
    except msgspec.ValidationError as exc:
        return error(400, "malformed", f"{shape}: {exc}")
    except (msgspec.DecodeError, RecursionError) as exc:
        return error(400, "malformed", f"body is not valid JSON: {exc}")


async def read_batch(request: Request) -> Batch | Response:
    """The request's batch, or the 400/413/415 that refuses it."""
    read = await read_json(request, _BATCH, "batch")
    if isinstance(read, Response):
        return read
    batch: Batch = read[0]
    settings = request.app.state.settings
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
