"""Seed 002's route: ``POST /api/v1/analytics/events/``, one event or ``{"events": [...]}``.

Each event ``{event_type, anonymous_id, source, payload}`` becomes a catalog event and goes
through the shared ``admit`` / ``accept`` path. Ids and times are the server's unless the client
sends ``event_id`` / ``created_at``. The anonymous id comes from the body or ``X-Client-ANON-ID``;
an ``Authorization: Bearer`` JWT links the event to its ``sub`` as the user. The actor (the
partition key and the base unique count) is the user when there is one, else the anonymous id,
else the event itself. The request's IP and User-Agent are stored only as ``client_info`` makes
them: masked, and reduced to families.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from collector import openapi
from collector.client_info import client_info
from collector.ingest import accept, admit, read_json
from infra import tokens
from infra.service import error

PATH = "/api/v1/analytics/events/"
APP_VERSION = "unknown"  # the seed's events carry no app version
PLATFORM = "unknown"  # ... and ``source`` may be left out
SEED_NAMES = {"event_name": "event_type", "platform": "source", "ts_utc": "created_at"}
_PATH = re.compile(r"\$\.events\[(\d+)\](\.(event_name|platform|ts_utc))?")
_NAMED = re.compile(r"`(event_name|platform|ts_utc)`")  # "missing required field `event_name`"


class Bulk(msgspec.Struct, forbid_unknown_fields=False):
    events: list[msgspec.Raw]


class SeedEvent(msgspec.Struct, forbid_unknown_fields=False):
    """One seed-002 event (the body schema; bulk: ``{"events": [SeedEvent, ...]}``)."""

    event_type: str
    anonymous_id: str | None = None
    source: str | None = None
    payload: dict[str, Any] = {}
    event_id: uuid.UUID | None = None
    created_at: datetime | None = None


class SeedBulk(msgspec.Struct):
    events: list[SeedEvent]


class SeedCreated(msgspec.Struct):
    event_id: str


class SeedBulkCreated(msgspec.Struct):
    events_created: int
    event_ids: list[str]
    duplicates: int
    rejected: list[openapi.RejectedEvent]


_ANY = msgspec.json.Decoder()
_BULK = msgspec.json.Decoder(Bulk)


def _user(request: Request) -> tuple[str | None, Response | None]:
    """The signed-in user (the bearer JWT's ``sub``), or the 401 for a bad token."""
    token = tokens.bearer(request.headers.get("authorization"))
    if token is None:
        return None, None
    try:
        claims = tokens.verify(request.app.state.settings.jwt_secret_key, token, roles=None)
    except tokens.TokenError as exc:
        return None, error(401, "unauthorized", exc.detail, {"WWW-Authenticate": "Bearer"})
    sub = claims.get("sub")
    return (str(sub) if sub not in (None, "") else None), None


def to_catalog(obj: object, user: str | None, header_anon: str | None, now: str) -> tuple[bytes, str | None]:
    """The catalog event of one seed event (as JSON), and its id."""
    if not isinstance(obj, dict):
        return msgspec.json.encode(obj), None  # the validator names what is wrong with it
    eid = obj.get("event_id")
    if eid is None:
        eid = str(uuid.uuid4())
    anonymous = obj.get("anonymous_id") or header_anon
    event = {
        "event_id": eid,
        "event_name": obj.get("event_type"),
        "event_version": 1,
        "ts_utc": obj.get("created_at") or now,
        "anon_village_id": user or anonymous or eid,
        "user_id": user,
        "anonymous_id": anonymous,
        "app_version": APP_VERSION,
        "platform": obj.get("source") or PLATFORM,
        "payload": {} if obj.get("payload") is None else obj.get("payload"),
    }
    return msgspec.json.encode({k: v for k, v in event.items() if v is not None}), (
        str(eid) if isinstance(eid, str) else None
    )


def seed_error(message: str, single: bool) -> str:
    """A validator message in the seed's terms (``event_type`` for ``event_name``, ...)."""
    def name(m: re.Match[str]) -> str:
        head = "$" if single else f"$.events[{m.group(1)}]"
        return head + (f".{SEED_NAMES[m.group(3)]}" if m.group(3) else "")

    return _NAMED.sub(lambda m: f"`{SEED_NAMES[m.group(1)]}`", _PATH.sub(name, message))


async def events(request: Request) -> Response:
    """Seed 002: one event -> 201 {event_id}; {"events": [...]} -> 201 {events_created, event_ids}."""
    settings = request.app.state.settings
    refused = await admit(request, public=settings.public_ingest)
    if refused is not None:
        return refused
    user, bad_token = _user(request)
    if bad_token is not None:
        return bad_token
    read = await read_json(request, _ANY, "body")
    if isinstance(read, Response):
        return read
    obj, body = read
    if not isinstance(obj, dict):
        return error(400, "malformed", "body must be an event object or {\"events\": [...]}")
    single = "events" not in obj
    if single:
        if len(body) > settings.max_event_size:
            return error(413, "event_too_large", f"event is {len(body)} bytes, over the "
                         f"{settings.max_event_size}-byte limit (ANALYTICS_MAX_EVENT_SIZE)")
        elements, sizes = [obj], [len(body)]
    else:
        try:
            raws = _BULK.decode(body).events
        except msgspec.ValidationError as exc:
            return error(400, "malformed", f"events: {exc}")
        if len(raws) > settings.max_batch_size:
            return error(413, "batch_too_large",
                         f"{len(raws)} events, over MAX_BATCH_SIZE={settings.max_batch_size}")
        elements, sizes = [msgspec.json.decode(r) for r in raws], [len(r) for r in raws]
    header_anon = request.headers.get("x-client-anon-id") or None
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    translated = [to_catalog(e, user, header_anon, now) for e in elements]
    result = await accept(request, [msgspec.Raw(t) for t, _ in translated], None,
                          client=client_info(request), sizes=sizes)
    if isinstance(result, Response):
        return result
    rejected = {
        int(r["index"]): [seed_error(e, single) for e in r["errors"]]  # type: ignore[arg-type, union-attr]
        for r in result.rejected
    }
    if single:
        if rejected:
            return error(413 if "ANALYTICS_MAX_EVENT_SIZE" in rejected[0][0] else 400,
                         "invalid_event", "; ".join(rejected[0]))
        return JSONResponse({"event_id": translated[0][1]}, status_code=201)
    return JSONResponse({
        "events_created": result.accepted,
        "event_ids": [eid for i, (_, eid) in enumerate(translated) if i not in rejected],
        "duplicates": result.duplicates,
        "rejected": [{"index": i, "event_id": translated[i][1], "errors": errs}
                     for i, errs in sorted(rejected.items())],
    }, status_code=201)


ROUTES = [Route(PATH, events, methods=["POST"])]

openapi.EXTRA_STRUCTS += [SeedEvent, SeedBulk, SeedCreated, SeedBulkCreated]
openapi.OPERATIONS[(PATH, "post")] = {
    "summary": "Seed 002: one event, or {\"events\": [...]}",
    "description": (
        "Public with ANALYTICS_PUBLIC_INGEST=true (per-IP rate limit), else a write key or bearer "
        "JWT. An optional bearer JWT links the events to its `sub` as the user (pseudonymised). "
        "Ids and times are the server's unless sent. The IP is stored masked and the User-Agent "
        "as browser, OS and device type only."
    ),
    "security": [{}, *openapi.WRITE_SECURITY],
    "parameters": [
        {"name": "X-Client-ANON-ID", "in": "header", "schema": {"type": "string"},
         "description": "the anonymous id, when the body has none"},
        {"name": "DNT", "in": "header", "schema": {"type": "string"}},
    ],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "oneOf": [openapi.ref("SeedEvent"), openapi.ref("SeedBulk")]}}}},
    "responses": {
        "201": {"description": "Stored: the event's id, or the bulk's ids and rejections",
                "content": {"application/json": {"schema": {
                    "oneOf": [openapi.ref("SeedCreated"), openapi.ref("SeedBulkCreated")]}}}},
        "204": {"description": "DNT or ANALYTICS_ENABLED=false: nothing stored"},
        "400": openapi.error_response("Malformed body, or the single event is invalid"),
        "401": openapi.error_response("Credentials missing (route not public) or invalid"),
        "413": openapi.error_response("Single event over ANALYTICS_MAX_EVENT_SIZE, or bulk over MAX_BATCH_SIZE"),
        "415": openapi.error_response("Not application/json"),
        "429": openapi.error_response("Over RATE_LIMIT_PER_MINUTE", retry_after=True),
        "503": openapi.error_response("Store unavailable or backpressure", retry_after=True),
    },
}
