"""Prometheus metrics of the collector (``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest
from starlette.requests import Request
from starlette.responses import Response

ACCEPTED = Counter("collector_events_accepted_total", "Events stored in the stream")
DUPLICATES = Counter("collector_events_duplicate_total", "Events answered as duplicates")
REJECTED = Counter("collector_events_rejected_total", "Events rejected to the dead-letter stream")
OPT_OUTS = Counter("collector_opt_outs_total", "Requests dropped for opt-out, DNT or disabled")
REDIS_ERRORS = Counter("collector_redis_errors_total", "Requests failed by the store")


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
