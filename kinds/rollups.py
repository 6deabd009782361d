"""Closed-day rollups: one compact value per KPI and closed day (today: the session sketches, ``kinds.session``).

A day is closed once its end plus ``LATE_WINDOW_HOURS`` plus ``MAX_SESSION_HOURS`` has passed: no
ordinary event or session pairing can change its sketch any more. The first read of a closed day
merges its per-shard hashes and stores the merged sketch as one compact value
(``keyspace.session_rollup``); later reads of a range fetch all its closed days in one MGET
(one slot: shard 0's hash tag) and read only the open days live. Backfill and the history import
mark the rollups of the days they change stale (``forget``), and the KPI APIs' cached answers with
them (``keyspace.DATA_GENERATION``, followed by ``kpi_api/overrides.py``)."""

from __future__ import annotations

import time
from datetime import date

import redis

from schemas import keyspace
from schemas.days import DAY_MS, EPOCH_DAY
from schemas.settings import Settings


def closed(s: Settings, day: date, now_ms: int | None = None) -> bool:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    end_ms = ((day - EPOCH_DAY).days + 1) * DAY_MS
    return end_ms + (s.late_window_hours + s.max_session_hours) * 3_600_000 <= now


def ttl_seconds(s: Settings) -> int:
    """Rollups expire with the retention of the hashes they merge."""
    return s.metrics_retention_days * 86400


# What ``forget`` leaves for a while instead of a rollup: reads go live and, as they write rollups
# with SET NX, a read that fetched the hashes before the change cannot store its stale merge.
STALE = b""
STALE_SECONDS = 60


def forget(client: redis.Redis, days: list[str]) -> None:
    """Mark the rollups of ``days`` stale (rebuilt from the hashes by a read after STALE_SECONDS),
    and bump the data generation so that every KPI API drops the answers it cached of them."""
    if days:
        pipe = client.pipeline(transaction=False)
        for d in days:
            pipe.set(keyspace.session_rollup(d), STALE, ex=STALE_SECONDS)
        pipe.incr(keyspace.DATA_GENERATION)
        pipe.execute()
