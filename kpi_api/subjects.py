"""A data subject's rights on the KPI API (admin only): list a person's events, erase them, audit.

- ``GET /internal/analytics/users/{user_id}/events?start=&end=`` (dates, UTC, both optional)
- ``DELETE /internal/analytics/users/{user_id}``: answers what was removed, per place
- ``GET /internal/analytics/erasures``: the audit records, newest first

The work is ``aggregator/erase.py`` (synchronous, over every stream and the archive); it runs in a
thread with its own connection so the event loop keeps serving.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aggregator import erase
from aggregator.archive import open_archive
from kpi_api.auth import ADMIN, guard
from kpi_api.errors import BadRequest
from kpi_api.params import parse_date, positive_int
from infra.connection import open_sync
from schemas.days import day_start_ms

MAX_ID = 128  # the catalog's ActorId


def sync_client(request: Request) -> redis.Redis:
    state = request.app.state
    client = getattr(state, "sync_redis", None)
    if client is None:
        client = state.sync_redis = open_sync(state.base_settings.redis_url)
    return client


def _user_id(request: Request) -> str:
    user_id = request.path_params["user_id"]
    if not 1 <= len(user_id) <= MAX_ID:
        raise BadRequest(f"user_id must be 1 to {MAX_ID} characters")
    return user_id


async def _run(request: Request, fn: Any, *args: Any) -> Any:
    state = request.app.state
    return await asyncio.to_thread(fn, sync_client(request), state.settings,
                                   open_archive(state.settings.archive_url), *args)


@guard(ADMIN)
async def user_events(request: Request) -> Response:
    """A person's raw events wherever they rest, each once (admin; ``?start=&end=`` UTC days)."""
    user_id = _user_id(request)
    start = parse_date("start", request.query_params.get("start"), required=False)
    end = parse_date("end", request.query_params.get("end"), required=False)
    if start and end and end < start:
        raise BadRequest(f"end {end} is before start {start}")
    start_ms = day_start_ms(start) if start else None
    end_ms = day_start_ms(end + timedelta(days=1)) if end else None
    return JSONResponse(await _run(request, erase.find, user_id, start_ms, end_ms))


@guard(ADMIN)
async def erase_user(request: Request) -> Response:
    """Erase every raw event of a person (admin); answers what was removed, per place."""
    user_id = _user_id(request)
    requester = str(request.state.claims.get("sub") or "unknown")
    record = await _run(request, erase.erase, user_id, requester)
    return JSONResponse({**record, "aggregates": erase.AGGREGATES_NOTE})


@guard(ADMIN)
async def erasures(request: Request) -> Response:
    """The erasure audit records, newest first (admin; ``?limit=``)."""
    limit = positive_int(request, "limit", 100, 10_000) or 100
    client = sync_client(request)
    return JSONResponse({"erasures": await asyncio.to_thread(erase.audit, client, limit)})


async def user(request: Request) -> Response:
    """Erase every raw event of a person (admin); answers what was removed, per place."""
    return await erase_user(request)
