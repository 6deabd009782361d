"""Seed 003, the village KPI pipeline: the default profile."""

from schemas.catalog import CATALOG
from schemas.kpis import Kpi
from schemas.profiles import Profile

PROFILE = Profile(
    name="seed003",
    description="Village KPI pipeline: daily active villages, sessions, dialogue opens, commands",
    events=CATALOG,
    kpis=(
        Kpi("daily-active-villages", "uniques", unit="villages",
            description="unique anon_village_id per UTC day"),
        Kpi("session-duration", "session", unit="seconds",
            description="session_end - session_start, keyed by the start's day"),
        Kpi("village-retention", "retention", unit="share",
            description="share of each day's villages active again N days later (after=1, 7, 30)"),
        Kpi("total-villages", "total_actors", unit="villages",
            description="distinct villages ever seen (within METRICS_RETENTION_DAYS) up to and including each day"),
        Kpi("new-villages", "new_actors", unit="villages", description="villages first seen on each day"),
        Kpi("dialogue-opens", "count", events=("dialogue_open",)),
        Kpi("command-executions", "count", events=("command_executed",)),
        Kpi("commands-by-name", "count", events=("command_executed",), dimensions=("command",)),
        Kpi("dialogues-by-id", "top", events=("dialogue_open",), field="dialogue_id"),
        Kpi("events", "count", dimensions=("event_name", "platform", "app_version"),
            description="every event, by type, platform and app version"),
    ),
)
