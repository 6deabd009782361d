"""Seed 001, the FastAPI analytics service: page views, clicks, API calls, errors by source."""

from schemas.kpis import Kpi
from schemas.profiles import Profile
from schemas.profiles.events import ButtonPayload, ErrorPayload, PagePayload, catalog

PROFILE = Profile(
    name="seed001",
    description="Web app analytics: DAU and events by type and source",
    events=catalog(("page_view", PagePayload), ("button_click", ButtonPayload), ("error", ErrorPayload)),
    kpis=(
        Kpi("dau", "uniques", unit="users"),
        Kpi("events", "count", dimensions=("event_name", "platform")),
        Kpi("top-pages", "top", events=("page_view",), field="page"),
        Kpi("errors", "count", events=("error",), dimensions=("code",)),
    ),
)
