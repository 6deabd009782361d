"""The KPI API's Starlette application."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from kpi_api import adjustable, dashboard, privacy_report, reports, routes, subjects
from kpi_api.metrics import LATENCY, metrics
from kpi_api.openapi import openapi
from kpi_api.cache import Clock, TTLCache
from infra.connection import open_async
from infra.service import EXCEPTION_HANDLERS, ServerTime, Timing, healthz, readyz
from schemas.settings import Settings


def create_app(settings: Settings | None = None, clock: Clock = time.time) -> Starlette:
    """``clock`` (epoch seconds) drives cache lifetimes, open days and rate-limit windows."""
    settings = settings or Settings.from_env()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.redis = await open_async(settings.redis_url)
        try:
            yield
        finally:
            await app.state.redis.aclose()
            sync = getattr(app.state, "sync_redis", None)
            if sync is not None:
                sync.close()

    app = Starlette(
        routes=[
            Route("/internal/analytics/kpis", routes.kpi_list),
            Route("/internal/analytics/kpis.csv", routes.kpi_csv),
            Route("/internal/analytics/kpis/{kpi}", routes.kpi),
            Route("/internal/analytics/kpis/{kpi}/summary", routes.kpi_summary),
            Route("/internal/analytics/kpis/{kpi}/heatmap", routes.kpi_heatmap),
            Route("/internal/analytics/kpis/{kpi}/top", routes.kpi_top),
            Route("/internal/analytics/settings", adjustable.settings, methods=["GET", "PATCH"]),
            Route("/internal/analytics/users/{user_id}/events", subjects.user_events),
            Route("/internal/analytics/users/{user_id}", subjects.user, methods=["DELETE"]),
            Route("/internal/analytics/erasures", subjects.erasures),
            Route("/internal/analytics/privacy-report", privacy_report.privacy_report),
            Route("/api/analytics/metrics", routes.metrics),
            Route("/api/analytics/reports/dau", reports.dau),
            Route("/api/analytics/reports/events", reports.events_export),
            Route("/api/admin/analytics/daily-summary/", reports.daily_summary),
            Route("/api/admin/analytics/active-users/", reports.active_users),
            Route("/api/admin/analytics/top-services/", reports.top_services),
            Route("/api/admin/analytics/export/", reports.admin_export),
            *(dashboard.ROUTES if settings.dashboard_enabled else ()),  # DASHBOARD_ENABLED
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            Route("/openapi.json", openapi),
        ],
        middleware=[Middleware(ServerTime), Middleware(Timing, histogram=LATENCY)],
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
    )
    app.state.settings = settings  # with an admin's run-time changes (kpi_api/adjustable.py)
    app.state.base_settings = settings
    app.state.service = "kpi_api"
    app.state.clock = clock
    app.state.cache = TTLCache(clock)
    app.state.vendor = dashboard.resolve_vendor(settings.dashboard_assets)
    return app
