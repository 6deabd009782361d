"""Seed 001 and seed 002 reports, computed from the same aggregates (and raw streams) as the KPIs.

Mapping to the catalog: the actor is the pseudonymous village (seed 001: the user). A profile that
declares uniques KPIs of the envelope's second actor (``field="user"`` and ``field="anonymous"``,
seed 002's) gets ``unique_users`` and ``unique_anonymous`` from them; under any other profile
"users" are the actors and ``unique_anonymous`` is 0.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timezone
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from kinds import count, uniques
from kinds.base import suppress
from kpi_api import export, kpis, params
from kpi_api.auth import ADMIN, guard
from kpi_api.errors import BadRequest
from kpi_api.routes import cached
from schemas import profiles
from infra.connection import open_sync
from schemas.kpis import ACTOR_FIELDS

FIELD = re.compile(r"^[A-Za-z0-9_]{1,64}$")


def _today(request: Request) -> date:
    return datetime.fromtimestamp(request.app.state.clock(), tz=timezone.utc).date()


def _day(request: Request, name: str = "date") -> date:
    return params.parse_date(name, request.query_params.get(name), required=False) or _today(request)


def _event_type(request: Request, name: str = "event_type") -> str | None:
    value = request.query_params.get(name) or None
    known = profiles.event_names(request.app.state.settings.analytics_profile)
    if value is not None and value not in known:
        raise BadRequest(f"unknown {name} {value!r}; known: {', '.join(known)}")
    return value


@guard()
async def dau(request: Request) -> Response:
    """Seed 001: ``{"dau", "date", "period": "24h"}`` for one UTC day (default today)."""
    day = _day(request)
    r, s = request.app.state.redis, request.app.state.settings

    async def compute() -> dict[str, Any]:
        n = (await uniques.actors_per_day(r, s, [day]))[0]
        return {"dau": n, "date": day.isoformat(), "period": "24h"}

    return await cached(request, ("dau", day), day, compute)


async def _day_numbers(request: Request, day: date) -> tuple[int, int, dict[str, int]]:
    """(signed-in users, anonymous visitors, events by type) of one day."""
    r, s = request.app.state.redis, request.app.state.settings
    counters = (await count.counters_per_day(r, s, [day]))[0]
    by_type = dict(sorted(count.totals(counters).items()))
    kpis_ = profiles.load(s.analytics_profile).kpis
    users, anonymous = (next((k for k in kpis_ if k.kind == "uniques" and k.field == f), None)
                        for f in ACTOR_FIELDS)
    if users is None or anonymous is None:
        return (await uniques.actors_per_day(r, s, [day]))[0], 0, by_type
    u = (await uniques.field_per_day(r, s, users, [day]))[0]
    a = (await uniques.field_per_day(r, s, anonymous, [day]))[0]
    return int(u), int(a), by_type


@guard(ADMIN)
async def daily_summary(request: Request) -> Response:
    """Seed 002: totals for one day; the by-type breakdown obeys the k threshold."""
    day = _day(request)
    k = request.app.state.settings.kpi_min_group_size

    async def compute() -> dict[str, Any]:
        users, anonymous, by_type = await _day_numbers(request, day)
        out: dict[str, Any] = {"date": day.isoformat(), "total_events": sum(by_type.values()),
                               "unique_users": users, "unique_anonymous": anonymous,
                               "events_by_type": by_type}
        actors = users + anonymous
        rows = suppress([{"value": v} for v in by_type.values()], [actors] * len(by_type), k)
        if any(row.get("suppressed") for row in rows):
            out["events_by_type"] = {name: None for name in by_type}
            out["suppressed"] = True
        return out

    return await cached(request, ("daily-summary", day), day, compute)


@guard(ADMIN)
async def active_users(request: Request) -> Response:
    day = _day(request)

    async def compute() -> dict[str, Any]:
        users, anonymous, _ = await _day_numbers(request, day)
        return {"date": day.isoformat(), "daily_active_users": users, "unique_anonymous": anonymous,
                "total_active": users + anonymous}

    return await cached(request, ("active-users", day), day, compute)


@guard(ADMIN)
async def top_services(request: Request) -> Response:
    """Seed 002's top-N by a payload field (``field=``, default ``service_id``) over a date range.

    Scans the raw events (bounded by the range), so it is for modest ranges; values seen from
    fewer than k villages are left out, so no one is singled out.
    """
    start, end = params.date_range(request, "date_from", "date_to")
    limit = params.positive_int(request, "limit", 20, kpis.MAX_GROUPS) or 20
    field = request.query_params.get("field") or "service_id"
    if not FIELD.match(field):
        raise BadRequest(f"field={field!r} is not a payload field name")
    r, s = request.app.state.redis, request.app.state.settings
    k = max(1, s.kpi_min_group_size)

    async def compute() -> dict[str, Any]:
        counts: dict[str, int] = {}
        villages: dict[str, set[str]] = {}
        async for chunk in export.scan(r, s, start, end, None):
            for ev in chunk:
                value = ev.payload.get(field)
                if value is None or isinstance(value, (dict, list)):
                    continue
                key = str(value)
                counts[key] = counts.get(key, 0) + 1
                seen = villages.setdefault(key, set())
                if len(seen) < k:  # only "k or more" matters: keep at most k pseudonyms per value
                    seen.add(ev.village)
        ranked = sorted((v for v in counts if len(villages[v]) >= k), key=lambda v: (-counts[v], v))
        return {"top_services": [{f"payload__{field}": v, "count": counts[v]} for v in ranked[:limit]],
                "field": field, "date_from": start.isoformat(), "date_to": end.isoformat()}

    return await cached(request, ("top", start, end, limit, field), end, compute)


@guard(ADMIN)
async def events_export(request: Request) -> Response:
    """Seed 001: raw events as CSV (streamed) or XLSX, by event day; admin only."""
    fmt = params.choice(request, "format", ("csv", "xlsx"), "csv")
    today = _today(request)
    start = params.parse_date("start", request.query_params.get("start"), required=False) or today
    end = params.parse_date("end", request.query_params.get("end"), required=False) or start
    params.check_range(request, start, end)
    event_type = _event_type(request)
    r, s = request.app.state.redis, request.app.state.settings
    name = f"events_{start}_{end}"
    if fmt == "csv":
        return StreamingResponse(
            export.csv_stream(export.scan(r, s, start, end, event_type), export.EVENT_COLUMNS,
                              export.event_row, s.export_max_rows),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})

    def build() -> str:
        client = open_sync(s.redis_url)
        try:
            return export.write_xlsx(client, s, start, end, event_type)
        finally:
            client.close()

    path = await anyio.to_thread.run_sync(build)
    return StreamingResponse(
        export.file_chunks(path),
        media_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        headers={"Content-Disposition": f'attachment; filename="{name}.xlsx"'})


@guard(ADMIN)
async def admin_export(request: Request) -> Response:
    """Seed 002: ``export/?date=&event_type=&limit=`` streaming CSV with the seed's columns."""
    day = _day(request)
    event_type = _event_type(request)
    s = request.app.state.settings
    cap = s.export_max_rows or 10_000_000
    limit = params.positive_int(request, "limit", 10_000, cap) or 10_000
    r = request.app.state.redis
    return StreamingResponse(
        export.csv_stream(export.scan(r, s, day, day, event_type), export.SEED002_COLUMNS,
                          export.seed002_row, limit),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="analytics_{day}.csv"'})
