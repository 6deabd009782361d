"""KPI kinds: one module per kind of aggregate, each owning that kind's field encoding and reads.

A kind module is the only place that knows how its aggregate is laid out inside a key (the key
names themselves are ``schemas/keyspace.py``'s) and how shards and days merge into an answer:
the worker (``aggregator``), the backfill and the KPI API encode, parse and read through it,
never by hand. Every read module answers a ``kinds.base.Query`` with ``series`` and ``total``
and states what its total means (``total_means``).

- ``kinds.uniques``: HyperLogLogs of actors (optionally over a rolling window) or of a field's values.
- ``kinds.count``: event counters per name and hour, and counts by dimension; the weekday heatmap.
- ``kinds.sum``: exact scaled integer sums.
- ``kinds.top``: sorted sets of a field's values (and all-time tables), paged.
- ``kinds.session``: the paired start/end duration sketch (DDSketch, ``schemas/sketch.py``).
- ``kinds.retention``: the share of a day's actors active again N days later, from the daily HLLs.
- ``kinds.first_seen``: actors ever seen up to each day, and first seen on it, from the daily HLLs.
- ``kinds.rollups``: which days are closed, and the closed-day rollups' lifetime and invalidation.

The declarations (``schemas.kpis.Kpi``) and the kind names are the contract in ``schemas``.
"""

from __future__ import annotations

import importlib
from types import ModuleType


# kinds read by a module of another name (one module serves both)
_MODULES = {"total_actors": "first_seen", "new_actors": "first_seen"}


def module(kind: str) -> ModuleType:
    """The module of ``kind`` (``kinds.<kind>``): its reads, and its writes if it keeps a key."""
    return importlib.import_module(f"kinds.{_MODULES.get(kind, kind)}")
