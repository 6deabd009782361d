"""Seed 002, Django event collection: a service marketplace, users and anonymous visitors apart."""

from schemas.kpis import Kpi
from schemas.profiles import Profile
from schemas.profiles.events import (
    BookingPayload, BookingStatusPayload, EmergencyPayload, JobApplyPayload, ScreenPayload,
    SearchPayload, ServicePayload, catalog,
)

PROFILE = Profile(
    name="seed002",
    description="Service marketplace: daily summary by type, top services, active users",
    events=catalog(
        ("page_view", ScreenPayload), ("booking_created", BookingPayload),
        ("booking_status", BookingStatusPayload), ("job_apply", JobApplyPayload),
        ("emergency_request", EmergencyPayload), ("service_search", SearchPayload),
        ("service_viewed", ServicePayload),
    ),
    hashed_fields=frozenset({"query", "booking_id", "worker_id"}),
    coarsened={"latitude": 2, "longitude": 2},  # a position to about 1 km, never finer
    kpis=(
        Kpi("active-users", "uniques", unit="actors",
            description="distinct actors: the user when signed in, else the anonymous id"),
        Kpi("unique-users", "uniques", field="user", unit="users", description="signed-in users"),
        Kpi("unique-anonymous", "uniques", field="anonymous", unit="visitors",
            description="anonymous ids seen without a signed-in user"),
        Kpi("events", "count", dimensions=("event_name", "platform")),
        Kpi("top-services", "top", field="service_id", description="events naming each service"),
        Kpi("bookings", "count", events=("booking_created",)),
    ),
)
