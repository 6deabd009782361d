"""Seed 001, the FastAPI analytics service: a web app's seven event types, DAU by user."""

from schemas.kpis import Kpi
from schemas.profiles import Profile
from schemas.profiles.events import (
    ButtonPayload, CoursePayload, ErrorOccurredPayload, FormPayload, SearchQueryPayload,
    VideoPayload, WebPagePayload, catalog,
)

PROFILE = Profile(
    name="seed001",
    description="Web app analytics: DAU and events by type and source",
    events=catalog(
        ("page_view", WebPagePayload), ("button_click", ButtonPayload), ("form_submit", FormPayload),
        ("video_play", VideoPayload), ("course_complete", CoursePayload),
        ("search_query", SearchQueryPayload), ("error_occurred", ErrorOccurredPayload),
    ),
    hashed_fields=frozenset({"query", "session_id"}),  # free text; the seed's session ids
    kpis=(
        Kpi("dau", "uniques", unit="users"),
        Kpi("events", "count", dimensions=("event_name", "platform")),
        Kpi("top-pages", "top", events=("page_view",), field="page"),
        Kpi("errors", "count", events=("error_occurred",), dimensions=("code",)),
        Kpi("courses-completed", "count", events=("course_complete",)),
    ),
)
