"""The one settings object: every process reads its configuration here, once, from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


@dataclass(frozen=True)
class Settings:
    redis_url: str | None = None
    port: int = 8000
    host: str = "127.0.0.1"
    log_level: str = "INFO"

    analytics_enabled: bool = True
    analytics_profile: str = "seed003"
    max_event_size: int = 2048
    max_batch_size: int = 1000
    max_body_bytes: int = 4 * 1024 * 1024
    rate_limit_per_minute: int = 6000
    write_keys: tuple[str, ...] = field(default_factory=tuple)
    jwt_secret_key: str = ""

    analytics_retention_days: int = 90
    metrics_retention_days: int = 365
    late_window_hours: int = 48
    future_margin_seconds: int = 300
    skew_tolerance_seconds: int = 5
    salt_rotation_days: int = 30
    max_session_hours: int = 24

    stream_shards: int = 4
    consumer_group: str = "aggregator"
    read_count: int = 100
    block_ms: int = 1000
    claim_idle_ms: int = 30_000
    max_deliveries: int = 5
    # the safety net behind MAX_DELIVERIES: an entry the stream delivered more often than this
    # without it being applied (one that kills the worker itself: OOM, segfault, hard exit, which
    # no failure count sees) is dead-lettered unread; from the environment 4 x MAX_DELIVERIES,
    # at least 20, so honest crashes and an entry's own counted failures stay well below it
    max_claims: int = 20
    # aggregator operations: heartbeat freshness, reconnect backoff cap, metrics port (0 = off),
    # how often a worker trims streams and prunes consumers that died with nothing pending
    heartbeat_ttl_seconds: int = 30
    reconnect_max_seconds: int = 10
    aggregator_metrics_port: int = 0
    maintenance_seconds: int = 60
    # /metrics of the HTTP services: on its own port (0: on the service's port), and/or behind a
    # bearer token ("": no token asked)
    collector_metrics_port: int = 0
    metrics_token: str = ""
    # the longest lifetime (exp - iat, or exp - now) a bearer JWT may have
    jwt_max_age_seconds: int = 30 * 86_400

    kpi_cache_seconds: int = 60
    kpi_max_range_days: int = 400
    # KPI API (issue 5): cache lifetimes, privacy threshold, per-token rate limit, exports
    kpi_cache_closed_seconds: int = 3600
    kpi_min_group_size: int = 5
    kpi_rate_limit_per_minute: int = 600
    export_max_rows: int = 0
    export_xlsx_max_rows: int = 1_048_575
    export_chunk: int = 4
    dashboard_assets: str = ""
    dashboard_enabled: bool = True  # false: /dashboard and its assets answer 404

    # -- collector on the public internet (issue 3) --
    backpressure_max_lag: int = 100_000  # undelivered stream entries, summed over shards
    backpressure_max_memory_bytes: int = 0  # 0: only the percentage of maxmemory applies
    backpressure_memory_percent: int = 90  # of Redis maxmemory, when maxmemory is set
    backpressure_check_ms: int = 1000  # each process probes Redis at most this often
    # the recent-events view (collector/recent.py): the newest stored events it shows per shard
    # (0: off), read from the shard streams, and how long ago (s) a shown event may have arrived
    debug_buffer_size: int = 100
    debug_buffer_ttl_seconds: int = 3600
    deadletter_maxlen: int = 100_000
    # HTTP limits of both servers, per connection (infra/http_limits.py)
    http_max_header_bytes: int = 16_384  # request line and headers: 431 beyond
    http_header_timeout_seconds: int = 10  # first byte to end of headers: 408 beyond
    http_body_timeout_seconds: int = 30  # end of headers to end of body, whatever the pace: 408
    http_max_connections: int = 1000  # open connections per process: 503 beyond
    # browser clients on other origins (CORS on the collector's ingest routes); "*" allows any
    allowed_origins: tuple[str, ...] = field(default_factory=tuple)
    # seed 002's keyless events route (POST /api/v1/analytics/events/), under the per-IP rate limit
    public_ingest: bool = False
    # durability of an accepted batch (issue 15): 2xx only once the append reached this many
    # replicas (WAIT) / was fsynced to the primary's AOF (WAITAOF), within the timeout (else 503)
    analytics_wait_replicas: int = 0
    analytics_wait_aof: bool = False
    analytics_wait_timeout_ms: int = 1000
    # Segment's Tracking API (/v1/...): its own limits, per message and per request (decoded)
    segment_max_message_bytes: int = 32 * 1024
    segment_max_batch_bytes: int = 500 * 1024

    # -- data lifecycle (issue 14) --
    # cold storage of raw events before they leave the streams: a local directory or an fsspec
    # URL (s3://, gs://, with the matching package installed); "" turns archiving off
    archive_url: str = ".run/archive"
    archive_retention_days: int = 730  # archive partitions older than this are deleted (0: never)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        e = os.environ if env is None else env
        d = cls()

        def num(name: str, default: int) -> int:
            raw = e.get(name)
            if raw is None or raw == "":
                return default
            try:
                return int(raw)
            except ValueError:
                raise SystemExit(f"configuration error: {name} must be an integer, got {raw!r}")

        max_deliveries = num("MAX_DELIVERIES", d.max_deliveries)
        return cls(
            redis_url=e.get("REDIS_URL") or None,
            port=num("PORT", d.port),
            host=e.get("HOST", d.host),
            log_level=e.get("LOG_LEVEL", d.log_level).upper(),
            analytics_enabled=_bool(e.get("ANALYTICS_ENABLED", "true")),
            analytics_profile=e.get("ANALYTICS_PROFILE", d.analytics_profile),
            max_event_size=num("ANALYTICS_MAX_EVENT_SIZE", d.max_event_size),
            max_batch_size=num("MAX_BATCH_SIZE", d.max_batch_size),
            max_body_bytes=num("MAX_BODY_BYTES", d.max_body_bytes),
            rate_limit_per_minute=num("RATE_LIMIT_PER_MINUTE", d.rate_limit_per_minute),
            write_keys=_csv(e.get("ANALYTICS_WRITE_KEYS", "")),
            jwt_secret_key=e.get("JWT_SECRET_KEY", ""),
            # EVENT_RETENTION_DAYS: seed 001's name for it; ANALYTICS_RETENTION_DAYS wins if both
            analytics_retention_days=num(
                "ANALYTICS_RETENTION_DAYS", num("EVENT_RETENTION_DAYS", d.analytics_retention_days)
            ),
            metrics_retention_days=num("METRICS_RETENTION_DAYS", d.metrics_retention_days),
            late_window_hours=num("LATE_WINDOW_HOURS", d.late_window_hours),
            future_margin_seconds=num("FUTURE_MARGIN_SECONDS", d.future_margin_seconds),
            skew_tolerance_seconds=num("SKEW_TOLERANCE_SECONDS", d.skew_tolerance_seconds),
            salt_rotation_days=max(1, num("SALT_ROTATION_DAYS", d.salt_rotation_days)),
            max_session_hours=num("MAX_SESSION_HOURS", d.max_session_hours),
            stream_shards=max(1, num("STREAM_SHARDS", d.stream_shards)),
            consumer_group=e.get("CONSUMER_GROUP", d.consumer_group),
            read_count=num("READ_COUNT", d.read_count),
            block_ms=num("BLOCK_MS", d.block_ms),
            claim_idle_ms=num("CLAIM_IDLE_MS", d.claim_idle_ms),
            max_deliveries=max_deliveries,
            max_claims=num("MAX_CLAIMS", max(d.max_claims, 4 * max_deliveries)),
            heartbeat_ttl_seconds=max(1, num("HEARTBEAT_TTL_SECONDS", d.heartbeat_ttl_seconds)),
            reconnect_max_seconds=max(1, num("RECONNECT_MAX_SECONDS", d.reconnect_max_seconds)),
            aggregator_metrics_port=num("AGGREGATOR_METRICS_PORT", d.aggregator_metrics_port),
            maintenance_seconds=max(1, num("MAINTENANCE_SECONDS", d.maintenance_seconds)),
            collector_metrics_port=num("COLLECTOR_METRICS_PORT", d.collector_metrics_port),
            metrics_token=e.get("METRICS_TOKEN", d.metrics_token),
            jwt_max_age_seconds=max(60, num("JWT_MAX_AGE_SECONDS", d.jwt_max_age_seconds)),
            kpi_cache_seconds=num("KPI_CACHE_SECONDS", d.kpi_cache_seconds),
            kpi_max_range_days=num("KPI_MAX_RANGE_DAYS", d.kpi_max_range_days),
            kpi_cache_closed_seconds=num("KPI_CACHE_CLOSED_SECONDS", d.kpi_cache_closed_seconds),
            kpi_min_group_size=num("KPI_MIN_GROUP_SIZE", d.kpi_min_group_size),
            kpi_rate_limit_per_minute=num("KPI_RATE_LIMIT_PER_MINUTE", d.kpi_rate_limit_per_minute),
            export_max_rows=num("EXPORT_MAX_ROWS", d.export_max_rows),
            export_xlsx_max_rows=num("EXPORT_XLSX_MAX_ROWS", d.export_xlsx_max_rows),
            export_chunk=max(1, num("EXPORT_CHUNK", d.export_chunk)),
            dashboard_assets=e.get("DASHBOARD_ASSETS", d.dashboard_assets),
            dashboard_enabled=_bool(e.get("DASHBOARD_ENABLED", "true")),
            backpressure_max_lag=num("BACKPRESSURE_MAX_LAG", d.backpressure_max_lag),
            backpressure_max_memory_bytes=num(
                "BACKPRESSURE_MAX_MEMORY_BYTES", d.backpressure_max_memory_bytes
            ),
            backpressure_memory_percent=num(
                "BACKPRESSURE_MEMORY_PERCENT", d.backpressure_memory_percent
            ),
            backpressure_check_ms=num("BACKPRESSURE_CHECK_MS", d.backpressure_check_ms),
            debug_buffer_size=num("DEBUG_BUFFER_SIZE", d.debug_buffer_size),
            debug_buffer_ttl_seconds=num("DEBUG_BUFFER_TTL_SECONDS", d.debug_buffer_ttl_seconds),
            deadletter_maxlen=num("DEADLETTER_MAXLEN", d.deadletter_maxlen),
            allowed_origins=_csv(e.get("ANALYTICS_ALLOWED_ORIGINS", "")),
            http_max_header_bytes=max(1024, num("HTTP_MAX_HEADER_BYTES", d.http_max_header_bytes)),
            http_header_timeout_seconds=max(
                1, num("HTTP_HEADER_TIMEOUT_SECONDS", d.http_header_timeout_seconds)
            ),
            http_body_timeout_seconds=max(1, num("HTTP_BODY_TIMEOUT_SECONDS", d.http_body_timeout_seconds)),
            http_max_connections=max(1, num("HTTP_MAX_CONNECTIONS", d.http_max_connections)),
            public_ingest=_bool(e.get("ANALYTICS_PUBLIC_INGEST", "false")),
            analytics_wait_replicas=max(0, num("ANALYTICS_WAIT_REPLICAS", d.analytics_wait_replicas)),
            analytics_wait_aof=_bool(e.get("ANALYTICS_WAIT_AOF", "false")),
            analytics_wait_timeout_ms=max(
                1, num("ANALYTICS_WAIT_TIMEOUT_MS", d.analytics_wait_timeout_ms)
            ),
            segment_max_message_bytes=num("SEGMENT_MAX_MESSAGE_BYTES", d.segment_max_message_bytes),
            segment_max_batch_bytes=num("SEGMENT_MAX_BATCH_BYTES", d.segment_max_batch_bytes),
            archive_url=e.get("ANALYTICS_ARCHIVE_URL", d.archive_url).strip(),
            archive_retention_days=num("ARCHIVE_RETENTION_DAYS", d.archive_retention_days),
        )

    @property
    def late_window_ms(self) -> int:
        return self.late_window_hours * 3_600_000
