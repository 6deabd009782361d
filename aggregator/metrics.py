"""Prometheus metrics of one worker process, served on its own port (``--metrics-port``).

Counters are this process's work; the per-shard gauges (lag, pending, oldest pending idle) are
read from Redis at scrape time, so every worker reports the same, current, group-wide figures.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from aggregator.backlog import shard_backlog
from schemas.settings import Settings

PROCESSED = Counter(
    "analytics_aggregator_entries_processed", "Stream entries handled by this worker", ["shard"]
)
APPLIED = Counter("analytics_aggregator_events_applied", "Events applied to the KPIs", ["shard"])
LATE = Counter(
    "analytics_aggregator_events_late", "Events past the late window, kept aside", ["shard"]
)
DEAD_LETTERED = Counter(
    "analytics_aggregator_entries_dead_lettered",
    "Entries moved to the dead-letter stream (undecodable or delivered too many times)",
    ["shard"],
)
SKIPPED = Counter(
    "analytics_aggregator_entries_skipped",
    "Redelivered entries another consumer had already applied",
    ["shard"],
)
TRIMMED = Counter(
    "analytics_aggregator_entries_trimmed",
    "Pending entries trimmed from the stream before they were applied, acknowledged",
    ["shard"],
)
ERRORS = Counter(
    "analytics_aggregator_apply_errors", "Entries whose script failed; left pending", ["shard"]
)
BATCH_SECONDS = Histogram(
    "analytics_aggregator_batch_seconds",
    "Time to apply one read (the batches of every shard it returned)",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class StreamBacklogCollector(Collector):
    def __init__(self, client: redis.Redis, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    def collect(self) -> Iterator[GaugeMetricFamily]:
        lag = GaugeMetricFamily(
            "analytics_stream_lag_entries", "Entries not yet delivered to the group", labels=["shard"]
        )
        pending = GaugeMetricFamily(
            "analytics_stream_pending_entries", "Entries delivered, not yet acknowledged",
            labels=["shard"],
        )
        idle = GaugeMetricFamily(
            "analytics_stream_oldest_pending_idle_seconds",
            "Time since the oldest pending entry was delivered", labels=["shard"],
        )
        try:
            for shard in range(self.settings.stream_shards):
                b = shard_backlog(self.client, self.settings, shard)
                lag.add_metric([str(shard)], b.lag)
                pending.add_metric([str(shard)], b.pending)
                idle.add_metric([str(shard)], b.oldest_idle_ms / 1000)
        except (redis.RedisError, OSError):
            return  # Redis away: no gauges rather than stale ones; the counters still serve
        yield lag
        yield pending
        yield idle


def serve(port: int, client: redis.Redis, settings: Settings) -> None:
    """Serve ``/metrics`` on ``port`` from a daemon thread (prometheus-client's own server)."""
    REGISTRY.register(StreamBacklogCollector(client, settings))
    start_http_server(port, addr=settings.host)
