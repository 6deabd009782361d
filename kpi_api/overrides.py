"""Settings an admin may change at run time, kept in Redis so every KPI API process shares them.

Each process reloads the overrides at most every ``REFRESH_S`` seconds, on its next guarded
request, and drops its answer cache when they change (a cached breakdown must not outlive a raised
k-threshold). The routes that read and change them are in ``kpi_api/adjustable.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from starlette.requests import Request

from kpi_api.cache import TTLCache
from schemas import keyspace

# setting -> (lowest, highest) accepted value
ADJUSTABLE: dict[str, tuple[int, int]] = {
    "kpi_min_group_size": (1, 1000),
    "kpi_cache_seconds": (0, 3600),
    "kpi_cache_closed_seconds": (0, 7 * 86_400),
    "kpi_max_range_days": (1, 3660),
    "kpi_rate_limit_per_minute": (0, 1_000_000),
}
REFRESH_S = 5.0


async def refresh(request: Request, force: bool = False) -> None:
    """Apply the shared overrides to this process's settings (at most every REFRESH_S seconds)."""
    state = request.app.state
    now = state.clock()
    if not force and now < getattr(state, "adjusted_at", float("-inf")) + REFRESH_S:
        return
    raw = await state.redis.hgetall(keyspace.ADJUSTED_SETTINGS)
    overrides = {}
    for key, value in raw.items():
        name = key.decode()
        if name in ADJUSTABLE:
            lo, hi = ADJUSTABLE[name]
            overrides[name] = min(max(int(value), lo), hi)
    state.adjusted_at = now
    if overrides != getattr(state, "overrides", {}):
        state.overrides = overrides
        state.settings = dataclasses.replace(state.base_settings, **overrides)
        state.cache = TTLCache(state.clock)


def describe(request: Request) -> dict[str, Any]:
    state = request.app.state
    return {
        name: {"value": getattr(state.settings, name), "default": getattr(state.base_settings, name),
               "min": lo, "max": hi, "adjusted": name in getattr(state, "overrides", {})}
        for name, (lo, hi) in ADJUSTABLE.items()
    }
