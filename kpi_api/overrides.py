"""Settings an admin may change at run time, kept in Redis so every KPI API process shares them.

The bounds and the overlay are shared with the collector and workers (``schemas/adjusted.py``).
Each process reloads the overrides at most every ``REFRESH_S`` seconds, on its next guarded
request, and drops its answer cache when they change (a cached breakdown must not outlive a raised
k-threshold), or when a backfill or an import changed closed days (``keyspace.DATA_GENERATION``:
their answers are otherwise cached for ``KPI_CACHE_CLOSED_SECONDS``). The routes that read and change them are in ``kpi_api/adjustable.py``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from kpi_api.cache import TTLCache
from schemas import keyspace
from schemas.adjusted import ADJUSTABLE, REFRESH_S, overlay, parse

__all__ = ["ADJUSTABLE", "REFRESH_S", "describe", "refresh"]


async def refresh(request: Request, force: bool = False) -> None:
    """Apply the shared overrides to this process's settings (at most every REFRESH_S seconds)."""
    state = request.app.state
    now = state.clock()
    if not force and now < getattr(state, "adjusted_at", float("-inf")) + REFRESH_S:
        return
    async with state.redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keyspace.ADJUSTED_SETTINGS)
        pipe.get(keyspace.DATA_GENERATION)
        raw, generation = await pipe.execute()
    overrides = parse(raw)
    state.adjusted_at = now
    if overrides != getattr(state, "overrides", {}) or generation != getattr(state, "generation", generation):
        state.overrides = overrides
        state.settings = overlay(state.base_settings, overrides)
        state.cache = TTLCache(state.clock)
    state.generation = generation


def describe(request: Request) -> dict[str, Any]:
    state = request.app.state
    return {
        name: {"value": getattr(state.settings, name), "default": getattr(state.base_settings, name),
               "min": lo, "max": hi, "adjusted": name in getattr(state, "overrides", {})}
        for name, (lo, hi) in ADJUSTABLE.items()
    }
