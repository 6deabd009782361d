"""Settings an admin may change at run time: their bounds, and how a process applies them.

The values live in one Redis hash (``keyspace.ADJUSTED_SETTINGS``), written by
``PATCH /internal/analytics/settings`` (``kpi_api/adjustable.py``). Every process that uses one of
them (KPI API, collector, workers, ``analytics-purge``) re-reads the hash at most every
``REFRESH_S`` seconds and overlays it on the settings it read from the environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from schemas.settings import Settings

# setting -> (lowest, highest) accepted value
ADJUSTABLE: dict[str, tuple[int, int]] = {
    "kpi_min_group_size": (1, 1000),
    "kpi_cache_seconds": (0, 3600),
    "kpi_cache_closed_seconds": (0, 7 * 86_400),
    "kpi_max_range_days": (1, 3660),
    "kpi_rate_limit_per_minute": (0, 1_000_000),
    # data lifecycle (issue 14): raw events in the streams, then aggregates (days)
    "analytics_retention_days": (1, 3660),
    "metrics_retention_days": (1, 3660),
}
REFRESH_S = 5.0


def parse(raw: Mapping[bytes | str, bytes | str]) -> dict[str, int]:
    """The hash's adjustable entries, clamped to their bounds (anything else is ignored)."""
    out: dict[str, int] = {}
    for key, value in raw.items():
        name = key.decode() if isinstance(key, bytes) else key
        if name in ADJUSTABLE:
            lo, hi = ADJUSTABLE[name]
            try:
                out[name] = min(max(int(value), lo), hi)
            except ValueError:
                continue
    return out


def overlay(base: Settings, overrides: Mapping[str, int]) -> Settings:
    return dataclasses.replace(base, **overrides) if overrides else base
