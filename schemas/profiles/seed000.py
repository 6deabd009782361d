"""Seed 000, tool-registry analytics: searches and server installs."""

from schemas.kpis import Kpi
from schemas.profiles import Profile
from schemas.profiles.events import SearchPayload, ServerInstalledPayload, catalog

PROFILE = Profile(
    name="seed000",
    description="Tool registry: search usage, installs, install_count per server, active servers",
    events=catalog(("search_performed", SearchPayload), ("server_installed", ServerInstalledPayload)),
    hashed_fields=frozenset({"query"}),
    kpis=(
        Kpi("total-searches", "count", events=("search_performed",), dimensions=("platform",)),
        Kpi("unique-searches", "uniques", events=("search_performed",), field="query",
            description="distinct (hashed) queries per day"),
        Kpi("search-results", "count", events=("search_performed",), dimensions=("results",),
            description="searches by their result count; group results=0 is the zero-result searches"),
        Kpi("installs", "count", events=("server_installed",), dimensions=("platform",)),
        Kpi("install-count", "top", events=("server_installed",), field="server_id", all_time=True,
            description="installs per server; the all-time table is each server's install_count"),
        Kpi("active-servers", "uniques", events=("server_installed",), field="server_id"),
        Kpi("active-users", "uniques", unit="users"),
        Kpi("events", "count", dimensions=("event_name", "platform")),
    ),
)
