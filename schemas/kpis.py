"""The KPI catalog: what the workers keep, declared per profile (see ``schemas/profiles``).

Every profile gets the base aggregates for free (per shard and UTC day of event time): a
HyperLogLog of actors, counters per event name and hour, and the session-duration sketch. A KPI
either reads those (``uniques`` of the actor, ``count`` without dimensions, ``session``) or asks
for one more aggregate of its own (``uniques`` of a payload field, ``count`` by dimensions,
``sum`` of a numeric payload field, ``top`` values of a payload field).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["uniques", "count", "sum", "top", "session", "retention", "total_actors", "new_actors"]
BUILTIN_DIMENSIONS = ("platform", "app_version", "event_name")
# a uniques KPI's ``field`` naming the envelope's second actor instead of a payload field:
# ``user`` (signed-in users) and ``anonymous`` (anonymous ids seen without a user), seed 002's
ACTOR_FIELDS = ("user", "anonymous")


@dataclass(frozen=True)
class Kpi:
    name: str  # the URL name: /internal/analytics/kpis/<name>
    kind: Kind
    events: tuple[str, ...] = ()  # events it counts; () = every event
    field: str | None = None  # payload field (or ACTOR_FIELDS): the unique value, the summed number, the top member
    dimensions: tuple[str, ...] = ()  # count breakdowns: platform, app_version, event_name, or payload fields
    scale: int = 1  # sum: kept as round(value * scale) so totals stay exact integers
    all_time: bool = False  # top: also keep a running all-time table (seed 000's install_count)
    unit: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind in ("sum", "top") and not self.field:
            raise ValueError(f"KPI {self.name}: a {self.kind} needs a payload field")
        if self.kind == "retention" and (self.field or self.events):
            raise ValueError(f"KPI {self.name}: retention reads the daily actors, of every event")
        if self.kind in ("total_actors", "new_actors") and (self.field or self.events):
            raise ValueError(f"KPI {self.name}: {self.kind} reads the daily actors, of every event")
        if self.dimensions and self.kind != "count":
            raise ValueError(f"KPI {self.name}: only counts have dimensions")

    @property
    def own_aggregate(self) -> bool:
        """Whether the workers keep a key for this KPI beyond the base aggregates."""
        if self.kind == "uniques":
            return self.field is not None
        if self.kind == "count":
            return bool(self.dimensions)
        return self.kind in ("sum", "top")

    def matches(self, event_name: str) -> bool:
        return not self.events or event_name in self.events
