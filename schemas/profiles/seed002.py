"""Seed 002, Django event collection: bookings and services."""

from schemas.kpis import Kpi
from schemas.profiles import Profile
from schemas.profiles.events import BookingPayload, PagePayload, SearchPayload, ServicePayload, catalog

PROFILE = Profile(
    name="seed002",
    description="Service marketplace: daily summary by type, top services, active users",
    events=catalog(
        ("page_view", PagePayload), ("booking_created", BookingPayload),
        ("service_viewed", ServicePayload), ("service_search", SearchPayload),
    ),
    hashed_fields=frozenset({"query", "booking_id"}),
    kpis=(
        Kpi("active-users", "uniques", unit="users"),
        Kpi("events", "count", dimensions=("event_name", "platform")),
        Kpi("top-services", "top", field="service_id", description="events naming each service"),
        Kpi("bookings", "count", events=("booking_created",)),
    ),
)
