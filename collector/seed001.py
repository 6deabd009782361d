"""Seed 001's routes: ``POST /api/analytics/ingest`` and its health, OpenAPI document and UI.

The seed's clients send a JSON array of ``{ts, user_id, type, src, payload}`` with a bearer JWT
and no event id. Each element becomes a catalog event (``type`` the event name, ``user_id`` the
actor, ``src`` the platform, ``ts`` the event time) and goes through the shared ``admit`` /
``accept`` path. Its id is derived from its content (``content_id``), so resending an array is
answered as duplicates; two identical events (same user, time to the millisecond, type, source
and payload) are one event.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from collector import openapi
from collector.ingest import accept, admit, read_json
from infra import tokens
from schemas.catalog import Timestamp
from schemas.days import to_ms
from infra.service import error, healthz

PREFIX = "/api/analytics"
# the namespace of the derived event ids (uuid5): fixed, so every collector derives the same id
NAMESPACE = uuid.UUID("5f0c1d0e-7a1b-4c44-9f5e-0a9c2d3b5e01")
APP_VERSION = "unknown"  # the seed's events carry no app version
PLATFORM = "unknown"  # ... and ``src`` may be left out
# the catalog's field names, as the seed's clients call them (for the errors we answer)
SEED_NAMES = {"ts_utc": "ts", "event_name": "type", "anon_village_id": "user_id", "platform": "src"}
_PATH = re.compile(r"\$\.events\[(\d+)\](\.(ts_utc|event_name|anon_village_id|platform))?")
_NAMED = re.compile(r"`(ts_utc|event_name|anon_village_id|platform)`")  # "missing field `ts_utc`"
_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])


class SeedEvent(msgspec.Struct, forbid_unknown_fields=False):
    """One element of the seed's array (the body schema; each element is checked on its own)."""

    ts: Timestamp
    user_id: str
    type: str
    src: str | None = None
    payload: dict[str, Any] = {}


class SeedRejected(msgspec.Struct):
    index: int
    event_id: str | None
    errors: list[str]


class SeedIngestResult(msgspec.Struct):
    ingested: int
    duplicates: int
    late: int  # of the ingested: already older than LATE_WINDOW_HOURS, stored but not counted
    rejected: list[SeedRejected]


def content_id(obj: dict[str, Any]) -> str:
    """uuid5 of the canonical JSON of (user_id, ts as epoch ms, type, src, payload)."""
    ts = obj.get("ts")
    if isinstance(ts, str):
        try:
            parsed = msgspec.convert(ts, datetime)
            ts = to_ms(parsed) if parsed.tzinfo is not None else ts
        except (msgspec.ValidationError, OverflowError):
            pass
    canonical = msgspec.json.encode(
        [obj.get("user_id"), ts, obj.get("type"), obj.get("src"), obj.get("payload")], order="sorted"
    )
    return str(uuid.uuid5(NAMESPACE, canonical.decode()))


def to_catalog(obj: object) -> tuple[bytes, str | None]:
    """The catalog event of one seed element (as JSON), and its derived id."""
    if not isinstance(obj, dict):
        return msgspec.json.encode(obj), None  # the validator names what is wrong with it
    eid = content_id(obj)
    event = {
        "event_id": eid,
        "event_name": obj.get("type"),
        "event_version": 1,
        "ts_utc": obj.get("ts"),
        "anon_village_id": obj.get("user_id"),
        "app_version": APP_VERSION,
        "platform": obj.get("src") or PLATFORM,
        "payload": {} if obj.get("payload") is None else obj.get("payload"),
    }
    # a field left out stays out, so the error says it is missing
    return msgspec.json.encode({k: v for k, v in event.items() if v is not None}), eid


def seed_error(message: str) -> str:
    """A validator message in the seed's terms: ``$[2].ts`` for ``$.events[2].ts_utc``."""
    message = _PATH.sub(
        lambda m: f"$[{m.group(1)}]" + (f".{SEED_NAMES[m.group(3)]}" if m.group(3) else ""), message
    )
    return _NAMED.sub(lambda m: f"`{SEED_NAMES[m.group(1)]}`", message)


def _unauthorized(detail: str) -> Response:
    return error(401, "unauthorized", detail, {"WWW-Authenticate": "Bearer"})


async def ingest(request: Request) -> Response:
    """Ingest a JSON array of seed-001 events (bearer JWT of any role)."""
    settings = request.app.state.settings
    refused = await admit(request)
    if refused is not None:
        return refused
    token = tokens.bearer(request.headers.get("authorization"))
    if token is None:
        return _unauthorized("bearer JWT required (signed with JWT_SECRET_KEY, any role)")
    try:
        tokens.verify(settings.jwt_secret_key, token, roles=None)
    except tokens.TokenError as exc:
        return _unauthorized(exc.detail)
    read = await read_json(request, _ARRAY, "body must be a JSON array of events")
    if isinstance(read, Response):
        return read
    elements = read[0]
    if len(elements) > settings.max_batch_size:
        return error(413, "batch_too_large",
                     f"{len(elements)} events, over MAX_BATCH_SIZE={settings.max_batch_size}")
    raw: list[msgspec.Raw] = []
    ids: list[str | None] = []
    for element in elements:
        try:
            obj = msgspec.json.decode(element)
        except RecursionError:
            obj = None
        encoded, eid = to_catalog(obj)
        raw.append(msgspec.Raw(encoded))
        ids.append(eid)
    result = await accept(request, raw, None)
    if isinstance(result, Response):
        return result
    rejected = [
        {"index": r["index"], "event_id": ids[r["index"]],  # type: ignore[index]
         "errors": [seed_error(e) for e in r["errors"]]}  # type: ignore[union-attr]
        for r in result.rejected
    ]
    return JSONResponse({"ingested": result.accepted, "duplicates": result.duplicates,
                         "late": result.late, "rejected": rejected})


# -- the seed's documentation paths -------------------------------------------------------------
DOCS_ASSETS = {
    "swagger-ui.css": "text/css",
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui-standalone-preset.js": "text/javascript",
}
DOCS_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>village-analytics collector API</title>
<link rel="stylesheet" href="{prefix}/docs/assets/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="{prefix}/docs/assets/swagger-ui-bundle.js"></script>
<script src="{prefix}/docs/assets/swagger-ui-standalone-preset.js"></script>
<script src="{prefix}/docs/assets/init.js"></script>
</body></html>
"""
# a script file, not inline, so the page works under a strict Content-Security-Policy
DOCS_INIT = """window.ui = SwaggerUIBundle({
  url: "%s/openapi.json", dom_id: "#swagger-ui", deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset], layout: "StandaloneLayout"
});
""" % PREFIX


def swagger_dir(configured: str) -> Path:
    """``swagger-ui-dist`` under ``DASHBOARD_ASSETS`` if set, else the repository's node_modules."""
    base = Path(configured) if configured else Path(__file__).resolve().parent.parent / "node_modules"
    return base / "swagger-ui-dist"


async def docs(request: Request) -> Response:
    """The OpenAPI UI (swagger-ui-dist from npm, served from node_modules)."""
    return HTMLResponse(DOCS_PAGE.format(prefix=PREFIX), headers={"Cache-Control": "no-cache"})


async def docs_asset(request: Request) -> Response:
    """The OpenAPI UI's scripts and styles."""
    name = request.path_params["name"]
    if name == "init.js":
        return Response(DOCS_INIT, media_type="text/javascript")
    if name not in DOCS_ASSETS:
        return error(404, "not_found", f"no asset {name!r}")
    path = swagger_dir(request.app.state.settings.dashboard_assets) / name
    if not path.is_file():
        return error(503, "assets_missing", f"{name} is not installed: run `npm ci` in the repository root")
    return FileResponse(path, media_type=DOCS_ASSETS[name], headers={"Cache-Control": "max-age=86400"})


ROUTES = [
    Route(f"{PREFIX}/ingest", ingest, methods=["POST"]),
    Route(f"{PREFIX}/healthz", healthz),
    Route(f"{PREFIX}/openapi.json", openapi.openapi),
    Route(f"{PREFIX}/docs", docs),
    Route(f"{PREFIX}/docs/assets/{{name}}", docs_asset),
]

openapi.EXTRA_STRUCTS += [SeedEvent, SeedIngestResult]
openapi.OPERATIONS[(f"{PREFIX}/ingest", "post")] = {
    "summary": "Seed 001: ingest a JSON array of {ts, user_id, type, src, payload}",
    "description": (
        "Bearer JWT signed with JWT_SECRET_KEY, any role. Each event's id is derived from its "
        "content (uuid5 of user_id, ts in ms, type, src, payload): resending an array is answered "
        "`ingested: 0` and counted once, and two identical events in the same millisecond are one."
    ),
    "security": [{"bearer": []}],
    "requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "array", "items": openapi.ref("SeedEvent")}}}},
    "responses": {
        "200": {"description": "Stored (ingested or duplicate); rejected events listed",
                "content": {"application/json": {"schema": openapi.ref("SeedIngestResult")}}},
        "204": {"description": "DNT, opt-out or analytics disabled: nothing stored"},
        "400": openapi.error_response("Not a JSON array"),
        "401": openapi.error_response("Missing or invalid bearer JWT"),
        "413": openapi.error_response("Array longer than MAX_BATCH_SIZE, or body over the cap"),
        "415": openapi.error_response("Not application/json"),
        "429": openapi.error_response("Over RATE_LIMIT_PER_MINUTE", retry_after=True),
        "503": openapi.error_response("Store unavailable or backpressure", retry_after=True),
    },
}
openapi.OPERATIONS[(f"{PREFIX}/healthz", "get")] = {
    "summary": "Seed 001's health check (the same as /healthz)",
    "responses": {"200": {"description": "Alive"}},
}
openapi.OPERATIONS[(f"{PREFIX}/openapi.json", "get")] = openapi.OPERATIONS[("/openapi.json", "get")]
