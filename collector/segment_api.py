"""Segment's HTTP Tracking API on the collector: ``POST /v1/batch`` and the single-message routes.

Stock Segment and RudderStack SDKs send here unchanged: the write key as the Basic username (or
the body's ``writeKey``, for ``sendBeacon``), JSON or ``text/plain`` bodies, gzip, Segment's limits
(``SEGMENT_MAX_MESSAGE_BYTES`` per message, ``SEGMENT_MAX_BATCH_BYTES`` per request). Each message
is mapped by ``collector.segment`` and goes through the native accept path (validation,
pseudonymisation, dedup by messageId, dead-letter). A message that is refused is dead-lettered
with its reason and the request still answers ``200 {"success": true}``, as Segment does, so SDKs
neither drop nor endlessly retry the rest; a malformed request or a bad write key is a 4xx.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collector.body import BodyError, read_body
from collector.ingest import Part, accept_parts, admit, client_gone
from collector.openapi import OPERATIONS, WRITE_SECURITY, error_response
from collector.segment import TYPES, Mapper, Refused, event_id, instant
from schemas import profiles

# the paths analytics.js abbreviates to the type's initial (``/v1/t``, ``/v1/p``, ... ``/v1/b``)
SINGLE = {**{t: t for t in TYPES}, **{t[0]: t for t in TYPES}}
BATCH = ("batch", "b")
MEDIA_TYPES = ("application/json", "text/plain")  # text/plain: analytics.js and sendBeacon


class _Batch(msgspec.Struct, forbid_unknown_fields=False):
    batch: list[msgspec.Raw]
    sentAt: Any = None
    writeKey: Any = None
    context: Any = None


_BATCH = msgspec.json.Decoder(_Batch)
_SUCCESS = {"success": True}


def _segment_error(resp: Response) -> Response:
    """Our ``{"error", "detail"}`` with Segment's ``code`` and ``message`` beside them, which the
    SDKs print when they log a refused request. An opt-out (nothing stored, 204 elsewhere) is
    Segment's 200: RudderStack's SDK takes only a 200 as delivered and would retry anything else."""
    if resp.status_code == 204:
        return JSONResponse(_SUCCESS)
    body = getattr(resp, "body", b"")
    try:
        content = msgspec.json.decode(body) if body else None
    except msgspec.DecodeError:
        return resp
    if not isinstance(content, dict) or "error" not in content:
        return resp
    headers = {k: v for k, v in resp.headers.items() if k not in ("content-length", "content-type")}
    return JSONResponse({**content, "code": content["error"], "message": content.get("detail", "")},
                        status_code=resp.status_code, headers=headers)


def _refuse(status: int, code: str, detail: str) -> Response:
    return _segment_error(JSONResponse({"error": code, "detail": detail}, status_code=status))


def _has_credentials(request: Request) -> bool:
    return "authorization" in request.headers or "x-write-key" in request.headers


def _mapper(request: Request) -> Mapper:
    state = request.app.state
    mapper = getattr(state, "segment_mapper", None)
    if mapper is None:
        profile = profiles.load(state.settings.analytics_profile)
        mapper = state.segment_mapper = Mapper(state.settings, profile.events)
    return mapper


async def segment(request: Request) -> Response:
    """Segment Tracking API (batch or one message); answers 200 {"success": true}"""
    settings = request.app.state.settings
    name = request.url.path.rsplit("/", 1)[-1]
    kind = None if name in BATCH else SINGLE[name]
    if _has_credentials(request):  # refused before the body is read, like the native route
        refused = await admit(request)
        if refused is not None:
            return _segment_error(refused)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in MEDIA_TYPES:
        return _refuse(415, "unsupported_media_type",
                       f"Content-Type {ctype[:64] or 'none'!r}: use application/json or text/plain")
    try:
        body = await read_body(request, settings.segment_max_batch_bytes)
    except BodyError as exc:
        limit = " (SEGMENT_MAX_BATCH_BYTES)" if exc.status == 413 else ""
        return _refuse(exc.status, exc.code, exc.detail + limit)
    except ClientDisconnect:
        return client_gone()
    parsed = _parse(body, kind)
    if isinstance(parsed, Response):
        return parsed
    messages, envelope = parsed
    if len(messages) > settings.max_batch_size:
        return _refuse(413, "batch_too_large",
                       f"{len(messages)} messages, over MAX_BATCH_SIZE={settings.max_batch_size}")
    if not _has_credentials(request):
        key = envelope.get("writeKey")
        refused = await admit(request, body_key=key if isinstance(key, str) and key else None)
        if refused is not None:
            return _segment_error(refused)
    try:
        batch_sent_at = instant(envelope.get("sentAt"), "sentAt")
    except ValueError as exc:
        return _refuse(400, "malformed", f"${exc}")
    context = envelope.get("context") if kind is None else None
    result = await _accept(request, messages, kind, batch_sent_at,
                           context if isinstance(context, dict) else None)
    return result if result is not None else JSONResponse(_SUCCESS)


def _parse(body: bytes, kind: str | None) -> tuple[list[bytes], dict[str, Any]] | Response:
    """The request's messages (each as sent) and its envelope fields, or the 400 that refuses it."""
    try:
        if kind is not None:
            message = msgspec.json.decode(body)
            if not isinstance(message, dict):
                return _refuse(400, "malformed", "body: expected a JSON object (one message)")
            return [body], message
        batch = _BATCH.decode(body)
    except msgspec.ValidationError as exc:
        return _refuse(400, "malformed", f"batch: {exc}")
    except (msgspec.DecodeError, RecursionError) as exc:
        return _refuse(400, "malformed", f"body is not valid JSON: {exc}")
    envelope = {"sentAt": batch.sentAt, "writeKey": batch.writeKey, "context": batch.context}
    return [bytes(m) for m in batch.batch], envelope


async def _accept(
    request: Request,
    messages: list[bytes],
    kind: str | None,
    batch_sent_at: int | None,
    context: dict[str, Any] | None,
) -> Response | None:
    settings = request.app.state.settings
    mapper = _mapper(request)
    received = int(time.time() * 1000)
    request_client = (request.client.host if request.client else None,
                      request.headers.get("user-agent"))
    events: list[Part] = []
    refused: list[tuple[int, dict[str, object], str, str]] = []
    for index, raw in enumerate(messages):
        try:
            message = msgspec.json.decode(raw)
        except (msgspec.DecodeError, RecursionError):
            message = None
        if not isinstance(message, dict):
            refused.append((index, {}, "malformed", ": expected a JSON object (a message)"))
            continue
        if len(raw) > settings.segment_max_message_bytes:
            known = {"event_id": event_id(message.get("messageId"), message)}
            refused.append((index, known, "too_large", f": message is {len(raw)} bytes, over the "
                            f"{settings.segment_max_message_bytes}-byte limit (SEGMENT_MAX_MESSAGE_BYTES)"))
            continue
        try:
            event, client, skew = mapper.event(message, kind, received, batch_sent_at, context,
                                               request_client)
        except Refused as exc:
            refused.append((index, exc.known, exc.reason, exc.detail))
            continue
        events.append((index, msgspec.json.encode(event), client, skew))
    result = await accept_parts(request, received, events, refused,
                                "$" if kind is not None else "$.batch[{}]")
    return _segment_error(result) if isinstance(result, Response) else None


def routes() -> list[Route]:
    return [Route(f"/v1/{name}", segment, methods=["POST"]) for name in (*BATCH, *SINGLE)]


OPERATIONS.update({
    (f"/v1/{name}", "post"): {
        "summary": (f"Segment Tracking API: one {SINGLE[name]} message" if name in SINGLE
                    else "Segment Tracking API: a batch of messages"),
        "description": (
            "Segment's HTTP Tracking API, for stock Segment and RudderStack SDKs. Each message is "
            "mapped onto the catalog (README: 'Point your Segment SDK here') and stored, or "
            "dead-lettered with its reason; the request answers 200 {\"success\": true} either "
            "way. Write key as the Basic username, X-Write-Key, or the body's writeKey. "
            "`Content-Encoding: gzip` is accepted."
        ),
        "security": WRITE_SECURITY,
        "requestBody": {"required": True, "content": {
            t: {"schema": {"type": "object"}} for t in MEDIA_TYPES
        }},
        "responses": {
            "200": {"description": "Stored, or dead-lettered with the reason",
                    "content": {"application/json": {"schema": {
                        "type": "object", "properties": {"success": {"const": True}}}}}},
            "204": {"description": "Opt-out, DNT or analytics disabled: nothing stored"},
            "400": error_response("Malformed body"),
            "401": error_response("Missing or unknown write key"),
            "413": error_response("Body over SEGMENT_MAX_BATCH_BYTES or more than MAX_BATCH_SIZE messages"),
            "415": error_response("Not JSON or text/plain, or an unsupported Content-Encoding"),
            "429": error_response("Over RATE_LIMIT_PER_MINUTE", retry_after=True),
            "503": error_response("Store unavailable or backpressure", retry_after=True),
        },
    }
    for name in (*BATCH, *SINGLE)
})
