"""The collector's Starlette application: routes, lifespan (Redis), middleware."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from collector.ingest import ingest
from collector.metrics import metrics
from collector.privacy import Pseudonymizer
from collector.store import EventStore
from collector.validate import Validator
from schemas.connection import open_async
from schemas.service import ServerTime, healthz, readyz
from schemas.settings import Settings


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = await open_async(settings.redis_url)
        app.state.redis = client
        app.state.store = EventStore(client, settings)
        app.state.validator = Validator(settings, Pseudonymizer(client, settings))
        try:
            yield
        finally:
            await client.aclose()

    app = Starlette(
        routes=[
            Route("/api/analytics/events", ingest, methods=["POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
        ],
        middleware=[Middleware(ServerTime)],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = "collector"
    return app
