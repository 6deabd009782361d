"""Seed 004, admin platform analytics: engagement, features, content, AI usage and cost."""

from schemas.kpis import Kpi
from schemas.profiles import Profile
from schemas.profiles.events import (
    AiRequestPayload, ContentPayload, ErrorPayload, FeaturePayload, PagePayload, catalog,
)

PROFILE = Profile(
    name="seed004",
    description="Admin platform: DAU/WAU/MAU, session length, feature usage, content, AI usage",
    events=catalog(
        ("page_view", PagePayload), ("feature_use", FeaturePayload),
        ("content_create", ContentPayload), ("ai_request", AiRequestPayload), ("error", ErrorPayload),
        sessions=True,
    ),
    kpis=(
        Kpi("dau", "uniques", unit="users"),
        Kpi("session-duration", "session", unit="seconds"),
        Kpi("user-retention", "retention", unit="share",
            description="share of each day's users active again N days later (after=1, 7, 30)"),
        Kpi("total-users", "total_actors", unit="users",
            description="distinct users ever seen (within METRICS_RETENTION_DAYS) up to and including each day"),
        Kpi("new-users", "new_actors", unit="users", description="users first seen on each day"),
        Kpi("feature-usage", "top", events=("feature_use",), field="feature"),
        Kpi("content-created", "count", events=("content_create",), dimensions=("content_type",)),
        Kpi("ai-requests", "count", events=("ai_request",), dimensions=("model",)),
        Kpi("ai-tokens", "sum", events=("ai_request",), field="tokens", unit="tokens"),
        Kpi("ai-cost", "sum", events=("ai_request",), field="cost_usd", scale=1_000_000, unit="USD"),
        Kpi("events", "count", dimensions=("event_name", "platform")),
    ),
)
