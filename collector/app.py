"""The collector's Starlette application: routes, lifespan (Redis), middleware."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from collector import seed001, seed002
from collector.backpressure import Backpressure
from collector.cors import cors_middleware
from collector.history import import_history
from collector.ingest import ingest
from collector.metrics import LATENCY, metrics, serve_separately
from collector.openapi import openapi
from collector.privacy import Pseudonymizer
from collector.ratelimit import RateLimiter
from collector.recent import recent_events
from collector.sdk_asset import sdk_js
from collector.segment_api import routes as segment_routes
from collector.store import EventStore
from collector.validate import Validator
from infra.connection import open_async
from infra.pipelined import Pipelined
from infra.service import EXCEPTION_HANDLERS, ServerTime, Timing, healthz, readyz
from schemas.settings import Settings


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = await open_async(settings.redis_url)
        pseudonymizer = Pseudonymizer(client, settings)
        link = Pipelined.for_client(client)  # the hot path's one connection (single node only)
        app.state.redis = client
        app.state.store = EventStore(client, settings, link)
        app.state.validator = Validator(settings, pseudonymizer)
        app.state.ratelimit = RateLimiter(client, settings, pseudonymizer, link)
        app.state.backpressure = Backpressure(client, settings)
        stop_metrics = (
            serve_separately(settings.collector_metrics_port, settings.host)
            if settings.collector_metrics_port else None
        )
        try:
            yield
        finally:
            if stop_metrics is not None:
                stop_metrics()
            if link is not None:
                await link.aclose()
            await client.aclose()

    routes = [
        Route("/api/analytics/events", ingest, methods=["POST"]),
        Route("/internal/analytics/import", import_history, methods=["POST"]),
        Route("/internal/analytics/debug/recent-events", recent_events),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/openapi.json", openapi),
        Route("/sdk.js", sdk_js, methods=["GET"]),
        Route("/sdk.js.map", sdk_js, methods=["GET"]),
        *seed001.ROUTES,
        *seed002.ROUTES,
        *segment_routes(),  # Segment's Tracking API: /v1/batch, /v1/track, ... /v1/t
    ]
    if not settings.collector_metrics_port:  # else only on that port, not the public one
        routes.append(Route("/metrics", metrics))
    app = Starlette(
        routes=routes,
        middleware=[
            *cors_middleware(settings),
            Middleware(ServerTime),
            Middleware(Timing, histogram=LATENCY),
        ],
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.settings = settings
    app.state.service = "collector"
    return app
