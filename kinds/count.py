"""The ``count`` kind: events counted per UTC day, per event name and hour, or by dimension.

Two hash layouts, both encoded and parsed here only:

- the base counters (``keyspace.counts``): field ``<event>`` is the day's total of that event,
  ``<event>@<HH>`` its count in UTC hour HH;
- a count KPI's own hash (``keyspace.kpi``): field ``<dimension>=<value>``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

HOUR_SEP = "@"
DIM_SEP = "="


def hour_field(event: str, hour: int) -> str:
    """The field of ``event``'s counter in UTC hour ``hour`` (0..23)."""
    return f"{event}{HOUR_SEP}{hour:02d}"


def is_total(field: str) -> bool:
    """Whether a base-counter field is an event's daily total (not an hourly one)."""
    return HOUR_SEP not in field


def totals(counters: Mapping[str, int], only: str | None = None) -> dict[str, int]:
    """The daily totals by event name (optionally of one event) of a day's base counters."""
    return {k: v for k, v in counters.items() if HOUR_SEP not in k and (only is None or k == only)}


def hourly(counters: Mapping[str, int], events: Iterable[str], hour: int) -> int:
    """The events of ``events`` counted in UTC hour ``hour``."""
    return sum(counters.get(hour_field(e, hour), 0) for e in events)


def dim_field(dimension: str, value: object) -> str:
    """The field of one dimension value in a count KPI's hash."""
    return f"{dimension}{DIM_SEP}{value}"


def by_dimension(fields: Mapping[str, int], dimension: str) -> dict[str, int]:
    """The counts of one dimension's values in a count KPI's (merged) hash."""
    prefix = dimension + DIM_SEP
    return {f[len(prefix):]: v for f, v in fields.items() if f.startswith(prefix)}
