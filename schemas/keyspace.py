"""The Redis keyspace: every key name the collector and workers write and the KPI API reads.

Per-shard keys carry the hash tag ``{sN}`` so that each atomic script touches one cluster slot:
a shard's stream, its dedup markers, its aggregates and its session state live together.
Days are UTC dates of the (skew-corrected) event time, ``YYYY-MM-DD``.
"""

from __future__ import annotations

import zlib

PREFIX = "analytics"


def tag(shard: int) -> str:
    return "{s%d}" % shard


def shard_of(actor: str, shards: int) -> int:
    """Partition by actor so per-shard unique sets are disjoint and a session stays on one shard.

    Uses the raw id in memory only; the shard number is all that is kept.
    """
    return zlib.crc32(actor.encode()) % shards


# -- per shard ---------------------------------------------------------------------------------
def stream(shard: int) -> str:
    """Accepted events: one entry per (request, shard) holding a msgpack list of StoredEvent."""
    return f"{PREFIX}:{tag(shard)}:events"


def late_stream(shard: int) -> str:
    """Events older than the late window when processed: kept, not applied."""
    return f"{PREFIX}:{tag(shard)}:late"


def dedup_prefix(shard: int) -> str:
    """Prefix of the per-event idempotency markers (``<prefix><event_id hex>``)."""
    return f"{PREFIX}:{tag(shard)}:seen:"


def dedup_marker(shard: int, event_id: str) -> str:
    """The idempotency marker of one event (``event_id``: 32 hex characters)."""
    return dedup_prefix(shard) + event_id


def dau(shard: int, day: str) -> str:
    """HyperLogLog of pseudonymous village ids active on ``day``."""
    return f"{PREFIX}:{tag(shard)}:dau:{day}"


def counts(shard: int, day: str) -> str:
    """Hash of daily counters: field ``<event_name>`` and ``<event_name>@<HH>`` (hourly)."""
    return f"{PREFIX}:{tag(shard)}:counts:{day}"


def session_state(shard: int, session: str) -> str:
    """Hash pairing a session's start and end, whichever arrives first."""
    return f"{PREFIX}:{tag(shard)}:session:{session}"


def session_sketch(shard: int, day: str) -> str:
    """Hash: ``n`` sessions, ``sum`` of durations in ms, ``b<i>`` DDSketch bucket counts, ``z`` zero."""
    return f"{PREFIX}:{tag(shard)}:sessdur:{day}"


def recent(shard: int) -> str:
    """List of the shard's last accepted events (msgpack StoredEvent, pseudonymised), newest first.

    The collector's debug buffer: capped to ``DEBUG_BUFFER_SIZE`` and expiring after
    ``DEBUG_BUFFER_TTL_SECONDS`` without writes.
    """
    return f"{PREFIX}:{tag(shard)}:recent"


def worker_dead_letter(shard: int) -> str:
    """Stream entries the workers gave up on (undecodable, or delivered too many times), with
    the reason; per shard so that moving an entry here and acking it is one atomic step."""
    return f"{PREFIX}:{tag(shard)}:deadletter"


def kpi(shard: int, name: str, day: str) -> str:
    """A declared KPI's own aggregate for a day (HLL, hash or sorted set by the KPI's kind)."""
    return f"{PREFIX}:{tag(shard)}:kpi:{name}:{day}"


def kpi_all_time(shard: int, name: str) -> str:
    """A top-N KPI's running all-time table (seed 000's install_count per server); no TTL."""
    return f"{PREFIX}:{tag(shard)}:kpi:{name}:all"


def shard_stats(shard: int) -> str:
    """Hash of the shard's operational counters (late, dead-lettered, applied)."""
    return f"{PREFIX}:{tag(shard)}:stats"


# -- global ------------------------------------------------------------------------------------
DEAD_LETTER = f"{PREFIX}:deadletter"

# settings an admin changed at run time (hash: setting name -> integer), see kpi_api/adjustable.py
ADJUSTED_SETTINGS = f"{PREFIX}:settings"


def salt(epoch: int) -> str:
    """Secret HMAC salt for one rotation epoch; deleted (by TTL) after the late window."""
    return f"{PREFIX}:salt:{epoch}"


def heartbeat(consumer: str) -> str:
    """A worker's liveness: epoch ms of its last loop, expiring after ``heartbeat_ttl_seconds``."""
    return f"{PREFIX}:heartbeat:{consumer}"


HEARTBEAT_PATTERN = f"{PREFIX}:heartbeat:*"


def rate_limit(subject: str, minute: int) -> str:
    return f"{PREFIX}:ratelimit:{subject}:{minute}"


def api_rate_limit(token_digest: str, window: int) -> str:
    """KPI API requests of one bearer token in one minute window; the token is kept only as a digest."""
    return f"{PREFIX}:api-ratelimit:{token_digest}:{window}"
