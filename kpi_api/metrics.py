"""Prometheus metrics of the KPI API (``GET /metrics``): latency by route, cache hits, store errors."""

from __future__ import annotations


from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from infra.service import metrics_denied

LATENCY = Histogram(
    "kpi_api_request_seconds",
    "Request latency by route (its path template) and status class",
    ["route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CACHE = Counter("kpi_api_cache_total", "Cached answers looked up, by result", ["result"])
STORE_ERRORS = Counter("kpi_api_store_errors_total", "Requests failed because Redis was unavailable")


async def metrics(request: Request) -> Response:
    denied = metrics_denied(request)
    if denied is not None:
        return denied
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

