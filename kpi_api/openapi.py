"""``GET /openapi.json`` of the KPI API: every route the app serves, the seed reports in detail.

A route without an entry in ``OPERATIONS`` is listed from its docstring's first line, so the
document cannot miss a route; the reports the seeds' clients call spell out their parameters.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from schemas import __version__
from infra.service import openapi_paths

PUBLIC = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", "/dashboard", "/dashboard/privacy",
                    "/dashboard/assets/{name}"})


def _q(name: str, description: str, type_: str = "string", fmt: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": type_}
    if fmt:
        schema["format"] = fmt
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


DAY = _q("date", "UTC day, YYYY-MM-DD (default today)", fmt="date")
START, END = _q("start", "first UTC day, YYYY-MM-DD", fmt="date"), _q("end", "last UTC day (inclusive)", fmt="date")
ERRORS = {
    "400": {"description": "Bad parameter: {error, detail}"},
    "401": {"description": "Missing or invalid bearer token"},
    "403": {"description": "Role not allowed"},
    "429": {"description": "Over KPI_RATE_LIMIT_PER_MINUTE for this token"},
    "503": {"description": "KPI store unavailable"},
}


def _json(properties: dict[str, str]) -> dict[str, Any]:
    return {"description": "OK", "content": {"application/json": {"schema": {
        "type": "object", "properties": {k: {"type": v} for k, v in properties.items()}}}}}


OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("/api/analytics/reports/dau", "get"): {
        "summary": "Seed 001: daily active users of one UTC day",
        "parameters": [DAY],
        "responses": {"200": _json({"dau": "integer", "date": "string", "period": "string"}), **ERRORS},
    },
    ("/api/analytics/reports/events", "get"): {
        "summary": "Seed 001: raw events (pseudonymised) as CSV or XLSX (admin)",
        "parameters": [_q("format", "csv (default) or xlsx"), START, END, _q("event_type", "one event name")],
        "responses": {"200": {"description": "The file"}, **ERRORS},
    },
    ("/api/admin/analytics/daily-summary/", "get"): {
        "summary": "Seed 002: totals of one day, users and anonymous visitors apart",
        "parameters": [DAY],
        "responses": {"200": _json({"date": "string", "total_events": "integer", "unique_users": "integer",
                                    "unique_anonymous": "integer", "events_by_type": "object"}), **ERRORS},
    },
    ("/api/admin/analytics/active-users/", "get"): {
        "summary": "Seed 002: signed-in users, anonymous visitors and their total on one day",
        "parameters": [DAY],
        "responses": {"200": _json({"date": "string", "daily_active_users": "integer",
                                    "unique_anonymous": "integer", "total_active": "integer"}), **ERRORS},
    },
    ("/api/admin/analytics/top-services/", "get"): {
        "summary": "Seed 002: top values of a payload field over a date range",
        "parameters": [_q("date_from", "first UTC day", fmt="date"), _q("date_to", "last UTC day", fmt="date"),
                       _q("limit", "rows (default 20)", "integer"), _q("field", "payload field (default service_id)")],
        "responses": {"200": _json({"top_services": "array"}), **ERRORS},
    },
    ("/api/admin/analytics/export/", "get"): {
        "summary": "Seed 002: CSV of one day's events (id, created_at, event_type, user_id, anonymous_id, "
                   "source, ip_address, payload); ids pseudonymous, IPs masked (admin)",
        "parameters": [DAY, _q("event_type", "one event name"), _q("limit", "rows (default 10000)", "integer")],
        "responses": {"200": {"description": "text/csv"}, **ERRORS},
    },
    ("/internal/analytics/kpis/{kpi}", "get"): {
        "summary": "A KPI's daily (or hourly) series: [{date, value}], zero-filled",
        "parameters": [{"name": "kpi", "in": "path", "required": True, "schema": {"type": "string"}},
                       START, END, _q("metric", "session KPIs: avg, p50 or p95"),
                       _q("granularity", "day or hour"), _q("group_by", "a declared dimension"),
                       _q("limit", "groups", "integer"),
                       _q("after", "retention KPIs: the day offset N (default 1); value = share of day D's "
                          "actors active again on D+N, null while D+N is to come", "integer")],
        "responses": {"200": {"description": "[{date, value}]"}, **ERRORS},
    },
}


def document(routes: list[Any]) -> dict[str, Any]:
    paths = openapi_paths(
        routes, OPERATIONS, {"200": {"description": "See summary"}, **ERRORS},
        secured=lambda path: path not in PUBLIC,
    )
    return {
        "openapi": "3.1.0",
        "info": {"title": "village-analytics KPI API", "version": __version__},
        "paths": paths,
        "components": {"securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                       "description": "HS256 JWT signed with JWT_SECRET_KEY, role staff or admin"}}},
    }


async def openapi(request: Request) -> Response:
    """This document."""
    cached = getattr(request.app.state, "openapi", None)
    if cached is None:
        cached = request.app.state.openapi = document(request.app.routes)
    return JSONResponse(cached)
