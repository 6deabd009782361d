"""The KPI API's Starlette application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from kpi_api.cache import TTLCache
from kpi_api.routes import kpi
from schemas.connection import open_async
from schemas.service import ServerTime, healthz, readyz
from schemas.settings import Settings


def create_app(settings: Settings | None = None) -> Starlette:
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.redis = await open_async(settings.redis_url)
        try:
            yield
        finally:
            await app.state.redis.aclose()

    app = Starlette(
        routes=[
            Route("/internal/analytics/kpis/{kpi}", kpi),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
        ],
        middleware=[Middleware(ServerTime)],
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = "kpi_api"
    app.state.cache = TTLCache(settings.kpi_cache_seconds)
    return app
