"""Prometheus metrics of the collector (``GET /metrics``)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest, start_http_server
from starlette.requests import Request
from starlette.responses import Response

from infra.service import metrics_denied

ACCEPTED = Counter("collector_events_accepted_total", "Events stored in the stream")
DUPLICATES = Counter("collector_events_duplicate_total", "Events answered as duplicates")
LATE = Counter(
    "collector_events_late_total",
    "Accepted events already past LATE_WINDOW_HOURS on arrival: stored, never counted in a KPI",
)
REJECTED = Counter(
    "collector_events_rejected_total",
    "Events rejected to the dead-letter stream, by reason",
    ["reason"],
)
OPT_OUTS = Counter("collector_opt_outs_total", "Requests dropped for opt-out, DNT or disabled")
REDIS_ERRORS = Counter("collector_redis_errors_total", "Requests failed by the store")
RATE_LIMITED = Counter("collector_rate_limited_total", "Requests refused with 429")
BACKPRESSURE = Counter("collector_backpressure_total", "Requests refused with 503 for backpressure")
DISCONNECTS = Counter(
    "collector_client_disconnects", "Requests whose client went away before its body was read"
)
BATCH_SIZE = Histogram(
    "collector_batch_events",
    "Events per accepted request",
    buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500),
)
LATENCY = Histogram(
    "collector_request_seconds",
    "Request latency by route and status class",
    ["route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)


async def metrics(request: Request) -> Response:
    denied = metrics_denied(request)
    if denied is not None:
        return denied
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


def serve_separately(port: int, host: str) -> Callable[[], None]:
    """``/metrics`` on its own port (``COLLECTOR_METRICS_PORT``), e.g. one only the monitoring
    network reaches; returns the function that stops it."""
    server, thread = start_http_server(port, addr=host)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop

