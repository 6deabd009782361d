"""Routes for the settings an admin may change at run time (``kpi_api/overrides.py``).

``GET /internal/analytics/settings`` (staff or admin) lists each adjustable setting with its value,
its default (from the environment) and its bounds; ``PATCH`` with a JSON object (admin only) sets
some of them, ``null`` restoring the environment's value; other processes follow within
``overrides.REFRESH_S`` seconds.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kpi_api.auth import ADMIN, guard
from kpi_api.errors import BadRequest, HTTPError
from kpi_api.overrides import ADJUSTABLE, describe, refresh
from schemas import keyspace

MAX_BODY = 4096


def _changes(body: bytes) -> dict[str, int | None]:
    if len(body) > MAX_BODY:
        raise HTTPError(413, "body_too_large", f"body over {MAX_BODY} bytes")
    try:
        changes = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(changes, dict) or not changes:
        raise BadRequest('send a JSON object of settings to change, e.g. {"kpi_min_group_size": 10}')
    errors = []
    for name, value in changes.items():
        if name not in ADJUSTABLE:
            errors.append(f"{name}: not adjustable (adjustable: {', '.join(ADJUSTABLE)})")
            continue
        lo, hi = ADJUSTABLE[name]
        if value is not None and (type(value) is not int or not lo <= value <= hi):
            errors.append(f"{name}: expected an integer from {lo} to {hi}, or null for the default")
    if errors:
        raise BadRequest("; ".join(errors))
    return changes


@guard()
async def read_settings(request: Request) -> Response:
    return JSONResponse(describe(request))


@guard(ADMIN)
async def change_settings(request: Request) -> Response:
    changes = _changes(await request.body())
    async with request.app.state.redis.pipeline(transaction=True) as pipe:
        for name, value in changes.items():
            if value is None:
                pipe.hdel(keyspace.ADJUSTED_SETTINGS, name)
            else:
                pipe.hset(keyspace.ADJUSTED_SETTINGS, name, value)
        await pipe.execute()
    await refresh(request, force=True)
    return JSONResponse(describe(request))


async def settings(request: Request) -> Response:
    """``GET`` lists the adjustable settings; ``PATCH`` (admin) changes them."""
    if request.method == "PATCH":
        return await change_settings(request)
    return await read_settings(request)
