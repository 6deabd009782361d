"""``GET /openapi.json``: the collector's routes and bodies, built from the msgspec structs.

``OPERATIONS`` maps ``(path, method)`` to an OpenAPI operation; routes added by other modules may
register theirs there. A route with no registered operation is still listed, from its docstring,
so the document names every route the app serves.
"""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from schemas import __version__
from schemas import profiles
from schemas.catalog import Batch, Event
from infra.service import openapi_paths


class RejectedEvent(msgspec.Struct):
    index: int
    event_id: str | None
    errors: list[str]


class IngestResult(msgspec.Struct):
    accepted: int
    duplicates: int
    rejected: list[RejectedEvent]


class ErrorBody(msgspec.Struct):
    error: str
    detail: str


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _error(description: str, retry_after: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": _ref("ErrorBody")}},
    }
    if retry_after:
        out["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    return out


WRITE_SECURITY = [{"writeKeyBasic": []}, {"writeKeyHeader": []}, {"bearer": []}]

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/analytics/events", "post"): {
        "summary": "Send a batch of catalog events",
        "description": (
            "Each event is checked on its own: good events are stored, bad ones listed with the "
            "path and rule they broke and kept in the dead-letter stream. A 2xx means stored. "
            "`Content-Encoding: gzip` is accepted."
        ),
        "security": WRITE_SECURITY,
        "parameters": [
            {"name": "X-Analytics-Opt-Out", "in": "header", "schema": {"type": "string"}},
            {"name": "DNT", "in": "header", "schema": {"type": "string"}},
            {"name": "Content-Encoding", "in": "header", "schema": {"enum": ["gzip", "identity"]}},
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("Batch")}},
        },
        "responses": {
            "202": {
                "description": "Stored (accepted or duplicate); rejected events listed",
                "content": {"application/json": {"schema": _ref("IngestResult")}},
            },
            "204": {"description": "Opt-out, DNT or analytics disabled: nothing stored"},
            "400": _error("Malformed body"),
            "401": _error("Missing or unknown credentials"),
            "413": _error("Body over the cap or batch over MAX_BATCH_SIZE"),
            "415": _error("Not application/json, or an unsupported Content-Encoding"),
            "429": _error("Over RATE_LIMIT_PER_MINUTE", retry_after=True),
            "503": _error("Store unavailable or backpressure", retry_after=True),
        },
    },
    ("/internal/analytics/debug/recent-events", "get"): {
        "summary": "The last accepted events, pseudonymised (admin JWT)",
        "security": [{"bearer": []}],
        "parameters": [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 0}}],
        "responses": {
            "200": {"description": "Newest first", "content": {"application/json": {"schema": {
                "type": "object",
                "properties": {"events": {"type": "array", "items": {"type": "object"}},
                               "ttl_seconds": {"type": "integer"}},
            }}}},
            "401": _error("Missing or invalid bearer token"),
            "403": _error("Role is not admin"),
            "503": _error("Store unavailable", retry_after=True),
        },
    },
    ("/healthz", "get"): {"summary": "Liveness", "responses": {"200": {"description": "Alive"}}},
    ("/readyz", "get"): {
        "summary": "Readiness (Redis reachable)",
        "responses": {"200": {"description": "Ready"}, "503": {"description": "Redis down"}},
    },
    ("/metrics", "get"): {
        "summary": "Prometheus metrics",
        "responses": {"200": {"description": "Text exposition format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    },
    ("/openapi.json", "get"): {
        "summary": "This document",
        "responses": {"200": {"description": "OpenAPI 3.1"}},
    },
}


_INGEST = OPERATIONS[("/api/analytics/events", "post")]
OPERATIONS[("/internal/analytics/import", "post")] = {
    **_INGEST,
    "summary": "Import history older than the late window (admin JWT)",
    "description": (
        "Same body and answers as POST /api/analytics/events; the events are applied whatever "
        "their age, and re-importing them is answered as duplicates for the retention period."
    ),
    "security": [{"bearer": []}],
    "parameters": [p for p in _INGEST["parameters"] if p["name"] == "Content-Encoding"],
    "responses": {
        **{k: v for k, v in _INGEST["responses"].items() if k != "204"},
        "401": _error("Missing or invalid bearer token"),
        "403": _error("Role is not admin"),
    },
}


# for routes in other modules: their bodies' structs, and the two builders of their operations
EXTRA_STRUCTS: list[type] = []
ref, error_response = _ref, _error


def _components(events: list[type[Event]]) -> dict[str, Any]:
    _, comps = msgspec.json.schema_components(
        [Batch, IngestResult, ErrorBody, *EXTRA_STRUCTS, *events],
        ref_template="#/components/schemas/{name}",
    )
    comps["Batch"]["properties"]["events"]["items"] = {
        "oneOf": [_ref(struct.__name__) for struct in events]
    }
    return comps


def document(routes: list[Any], profile: str = "seed003") -> dict[str, Any]:
    """The OpenAPI document; event bodies are those of the active profile's catalog."""
    paths = openapi_paths(routes, OPERATIONS, {"default": {"description": "See summary"}})
    return {
        "openapi": "3.1.0",
        "info": {"title": "village-analytics collector", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": _components(list(profiles.load(profile).events.values())),
            "securitySchemes": {
                "writeKeyBasic": {"type": "http", "scheme": "basic",
                                  "description": "write key as the username, empty password"},
                "writeKeyHeader": {"type": "apiKey", "in": "header", "name": "X-Write-Key"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            },
        },
    }


async def openapi(request: Request) -> Response:
    cached = getattr(request.app.state, "openapi", None)
    if cached is None:
        cached = request.app.state.openapi = document(
            request.app.routes, request.app.state.settings.analytics_profile
        )
    return JSONResponse(cached)
