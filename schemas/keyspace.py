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


STREAM_PATTERN = f"{PREFIX}:*:events"  # every shard's stream (a SCAN pattern)


# The fields of an entry of a shard's stream (also of its late and worker dead-letter streams),
# the one format every reader and writer of events in Redis shares. The plain names are what
# ``xadd`` is given; the ``_B`` forms are the names as a read hands them back (bytes), so a
# lookup stays one dict access of a constant. The Lua scripts that write entries
# (collector/append.lua, aggregator/apply.lua, rewrite.lua, deadletter.lua) spell the same names
# as literals; tests read the scripts' entries back through these constants.
ENTRY_EVENTS = "e"  # the events: a msgpack array of StoredEvent (collector/store.py ``entry``)
ENTRY_EVENTS_B = ENTRY_EVENTS.encode()
ENTRY_COUNT = "n"  # how many events ENTRY_EVENTS holds (an integer; not in worker dead letters)
ENTRY_COUNT_B = ENTRY_COUNT.encode()
# set (to 1) on an erasure's or purge's replacement of an entry the workers applied already
# (aggregator/rewrite.lua): they acknowledge it without applying its events again
ENTRY_APPLIED_B = b"a"
# why a dead-letter entry is there: a JSON record (msgspec.json) with at least ``reason``. In the
# collector's rejections (``DEAD_LETTER``) a collector/store.py ``Rejection``, which its XADD
# writes; in a shard's worker dead letters (``worker_dead_letter``) the stream, entry id, reason,
# consumer and time (aggregator/worker.py ``_dead_letter``), which aggregator/deadletter.lua
# writes (spelling the name as a literal). Never in a shard's stream or late stream.
ENTRY_REASON = "r"
ENTRY_REASON_B = ENTRY_REASON.encode()


def late_stream(shard: int) -> str:
    """Events older than the late window when processed: kept, not applied."""
    return f"{PREFIX}:{tag(shard)}:late"


DEDUP_BUCKET_MS = 3_600_000


def dedup_hour(client_ts_ms: int) -> int:
    """The dedup bucket of an event: the hour of its client's own time (before skew correction)."""
    return client_ts_ms // DEDUP_BUCKET_MS


def dedup_bucket(shard: int, hour: int) -> str:
    """Set of the 16-byte ids of the events accepted on ``shard`` whose client time falls in
    ``hour`` (``dedup_hour``): the idempotency record, one set per bucket instead of a key per
    event. It lives at least the marker TTL after its last write."""
    return f"{PREFIX}:{tag(shard)}:seen:{hour}"


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


def rollup(kpi: str) -> str:
    """A KPI's closed-day rollups (kinds/rollups.py ``per_day``): one hash, field ``<variant>:<day>``
    -> msgpack ``[data generation, value]``, in shard 0's slot (one HMGET reads a range)."""
    return f"{PREFIX}:{tag(0)}:rollup:{kpi}"


ROLLUPS = f"{PREFIX}:{tag(0)}:rollup:*"  # every KPI's rollup hash (a SCAN pattern)


def session_rollup(day: str) -> str:
    """The closed day's merged session-duration sketch (``schemas.sketch`` ``encode``), one string
    for all shards, in shard 0's slot so that one MGET reads a range of them on a cluster."""
    return f"{PREFIX}:{tag(0)}:sessdur-rollup:{day}"


def recent(shard: int) -> str:
    """List of the shard's last accepted events (msgpack StoredEvent, pseudonymised), newest first.

    The debug buffer of older versions, a copy of what the stream holds: no longer written (the
    recent-events route reads the stream's newest entries, ``collector/recent.py``); one left by
    an older version expires ``DEBUG_BUFFER_TTL_SECONDS`` after its last write. Until then
    erasure still removes a person's events from it and the privacy report counts it.
    """
    return f"{PREFIX}:{tag(shard)}:recent"


def worker_dead_letter(shard: int) -> str:
    """Stream entries the workers gave up on (undecodable, or delivered too many times), with
    the reason; per shard so that moving an entry here and acking it is one atomic step."""
    return f"{PREFIX}:{tag(shard)}:deadletter"


def failures(shard: int) -> str:
    """Hash: stream entry id -> how many times that entry's own decode or apply failed.

    What decides that an entry is poison (past ``MAX_DELIVERIES``): a delivery count would also
    count the crashes of the workers that held it, which are not the entry's fault. The stream's
    delivery count is only the safety net for an entry that kills the worker itself, far above
    (``MAX_CLAIMS``, aggregator/worker.py).
    """
    return f"{PREFIX}:{tag(shard)}:failures"


def kpi(shard: int, name: str, day: str) -> str:
    """A declared KPI's own aggregate for a day (HLL, hash or sorted set by the KPI's kind)."""
    return f"{PREFIX}:{tag(shard)}:kpi:{name}:{day}"


def scratch(tag_: str, i: int) -> str:
    """A short-lived copy under one hash tag ``tag_`` (``{tmp-<uuid>}``): HLLs of several cluster
    slots counted together (kinds/base.py ``union_count``); it expires within a minute."""
    return f"{PREFIX}:{tag_}:{i}"


def shard_scratch(shard: int, token: str) -> str:
    """A short-lived key on ``shard``'s slot (kinds/first_seen.py's running union of the daily
    actors); its writer deletes it, and it expires within a minute if the writer dies."""
    return f"{PREFIX}:{tag(shard)}:scratch:{token}"


# every per-shard key (a SCAN pattern): the purge's sweep of old per-day aggregates
SHARD_KEYS = f"{PREFIX}:{{s*}}:*"


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

# counter bumped whenever closed days' aggregates change (backfill, history import): the KPI
# APIs drop their answer caches when it moves (kinds/rollups.py forget, kpi_api/overrides.py)
DATA_GENERATION = f"{PREFIX}:data-generation"

# erasure audit records (stream: keyed hash of the id, time, requester, counts), aggregator/erase.py
ERASURES = f"{PREFIX}:erasures"
# the one field of an audit record's entry: the record as JSON (aggregator/erase.py ``erase``)
ERASURE_RECORD = "r"
ERASURE_RECORD_B = ERASURE_RECORD.encode()
# the secret that keys the audit records' hash of an erased id (never expires, unlike the salts)
ERASURE_KEY = f"{PREFIX}:erasure-key"
# held by the one process archiving and deleting old events at a time (aggregator/purge.py)
PURGE_LOCK = f"{PREFIX}:purge-lock"
# requests the collector dropped for opt-out (hash: reason -> count), for the privacy report
OPT_OUTS = f"{PREFIX}:opt-outs"
SALT_PATTERN = f"{PREFIX}:salt:*"


def salt_epoch(key: str) -> int | None:
    """The epoch a salt key names, or None for another key."""
    head, _, tail = key.rpartition(":")
    return int(tail) if head == f"{PREFIX}:salt" and tail.isdigit() else None


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
