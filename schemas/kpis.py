"""The KPI catalog: what the workers keep and the API serves, declared per profile (``schemas/profiles``).

Every KPI the API serves is one ``Kpi``: the profile's own declarations, and the ``BASE`` KPIs that
every profile serves (a profile may declare one of those names itself, of the same kind). How each
kind is kept and read is its module in ``kinds/``.

Every profile gets the base aggregates for free (per shard and UTC day of event time): a
HyperLogLog of actors, counters per event name and hour, and the session-duration sketch. A KPI
either reads those (``uniques`` of the actor, ``count`` without dimensions or by event name,
``session``, ``retention``, ``total_actors``, ``new_actors``) or asks for one more aggregate of
its own (``uniques`` of a payload field, ``count`` by other dimensions, ``sum`` of a numeric
payload field, ``top`` values of a payload field).
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
    window_days: int = 1  # actor uniques: each day's value counts the actors of the N days ending it
    default_group: str | None = None  # count: the breakdown served when none is asked for
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
        if self.window_days != 1 and (self.kind != "uniques" or self.field or self.window_days < 1):
            raise ValueError(f"KPI {self.name}: a window is for the actor uniques")
        if self.default_group is not None and self.default_group not in self.dimensions:
            raise ValueError(f"KPI {self.name}: its default group is not one of its dimensions")

    @property
    def own_aggregate(self) -> bool:
        """Whether the workers keep a key for this KPI beyond the base aggregates."""
        if self.kind == "uniques":
            return self.field is not None
        if self.kind == "count":  # by event name: the base counters are kept per event name
            return any(d != "event_name" for d in self.dimensions)
        return self.kind in ("sum", "top")

    def matches(self, event_name: str) -> bool:
        return not self.events or event_name in self.events


# Served under every profile, from the base aggregates alone (no key of their own).
BASE: tuple[Kpi, ...] = (
    Kpi("daily-active-villages", "uniques", description="distinct villages active on each UTC day"),
    Kpi("weekly-active-villages", "uniques", window_days=7,
        description="distinct villages active in the 7 days ending each day"),
    Kpi("monthly-active-villages", "uniques", window_days=30,
        description="distinct villages active in the 30 days ending each day"),
    Kpi("session-duration", "session", unit="seconds",
        description="session length in seconds, by the UTC day the session started"),
    Kpi("events", "count", dimensions=("event_name",),
        description="all accepted events (filter with event_name=)"),
    Kpi("events-by-type", "count", dimensions=("event_name",), default_group="event_name",
        description="events per event name"),
)


def served(declared: tuple[Kpi, ...]) -> tuple[Kpi, ...]:
    """The KPIs a profile serves: the base ones (or the profile's declaration of the same name),
    then the rest of its declarations, in order."""
    own = {k.name: k for k in declared}
    for base in BASE:
        mine = own.get(base.name)
        if mine is not None and mine.kind != base.kind:
            raise ValueError(f"KPI {base.name}: every profile serves it as a {base.kind}")
    names = {b.name for b in BASE}
    return tuple(own.get(b.name, b) for b in BASE) + tuple(k for k in declared if k.name not in names)
