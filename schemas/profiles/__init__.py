"""Profiles: one event catalog plus one KPI catalog per kind of system the seeds describe.

``ANALYTICS_PROFILE`` picks one (default ``seed003``, the village KPI pipeline). Serving another
seed's system is configuration: a profile module, not a fork of the code.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from schemas.catalog import Event
from schemas.kpis import Kpi

NAMES = ("seed000", "seed001", "seed002", "seed003", "seed004")


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    events: dict[tuple[str, int], type[Event]]
    kpis: tuple[Kpi, ...]
    # payload fields that are identifiers or free text: stored only as keyed HMACs
    hashed_fields: frozenset[str] = field(default_factory=frozenset)
    # numeric payload fields that are personal at full precision (a position): stored rounded to
    # this many decimals (2 decimals of a degree: about 1 km)
    coarsened: dict[str, int] = field(default_factory=dict)

    def kpi(self, name: str) -> Kpi | None:
        return next((k for k in self.kpis if k.name == name), None)


def load(name: str) -> Profile:
    if name not in NAMES:
        raise SystemExit(f"configuration error: ANALYTICS_PROFILE={name!r}; use one of {', '.join(NAMES)}")
    return importlib.import_module(f"schemas.profiles.{name}").PROFILE


def event_names(name: str) -> list[str]:
    """The event names the profile's catalog accepts, sorted."""
    return sorted({event for event, _ in load(name).events})
