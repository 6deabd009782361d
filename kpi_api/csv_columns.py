"""The columns of the dashboard's CSV export: every daily KPI the active profile declares.

One column per declared KPI, named after it (``-`` becomes ``_``), in declaration order; a session
KPI gives three (``<name>_avg_s``, ``_p50_s``, ``_p95_s``), a retention KPI one per offset the
dashboard shows (``<name>_d1``, ``_d7``, ``_d30``); then the rolling actives every profile serves
(``window_days`` > 1: weekly and monthly). A top KPI's column is its values counted that day; a
count with dimensions, its total.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from kinds import retention
from kinds.base import Query
from kinds.session import METRICS
from schemas import profiles
from schemas.kpis import Kpi


@dataclass(frozen=True)
class Column:
    name: str  # the CSV header
    kpi: str  # the KPI it reads
    metric: str = "avg"  # session KPIs
    after: int | None = None  # retention KPIs

    def query(self, kpi: Kpi, start: date, end: date, today: date) -> Query:
        return Query(kpi, start, end, metric=self.metric, after=self.after or 1, today=today)


def _header(name: str) -> str:
    return name.replace("-", "_")


def columns(profile: str, known: dict[str, Kpi]) -> list[Column]:
    """The export's columns under ``profile``, of the KPIs it serves (``known``)."""
    out: list[Column] = []
    for spec in profiles.load(profile).kpis:
        if spec.name not in known:
            continue
        if spec.kind == "session":
            out += [Column(f"{_header(spec.name)}_{m}_s", spec.name, metric=m) for m in METRICS]
        elif spec.kind == "retention":
            out += [Column(f"{_header(spec.name)}_d{n}", spec.name, after=n) for n in retention.AFTER]
        else:
            out.append(Column(_header(spec.name), spec.name))
    declared = {k.name for k in profiles.load(profile).kpis}
    out += [Column(_header(k.name), k.name) for k in known.values()
            if k.window_days > 1 and k.name not in declared]  # the rolling actives every profile serves
    return out
