"""Query-parameter parsing with clear 400s: dates, ranges, enums, limits."""

from __future__ import annotations

from datetime import date

from starlette.requests import Request

from kpi_api.errors import BadRequest

# The days a KPI range may name: event days are counted from the epoch, and a range's reads reach
# beyond it (a summary's previous period up to KPI_MAX_RANGE_DAYS + 7 days back, a rolling window
# 30 days back, a retention's D+N up to 365 days on), which the calendar must still hold.
FIRST_DAY = date(1970, 1, 1)
LAST_DAY = date(9998, 12, 31)


def parse_date(name: str, raw: str | None, required: bool = True) -> date | None:
    if not raw:
        if required:
            raise BadRequest(f"query parameter {name!r} is required (YYYY-MM-DD)")
        return None
    try:
        if len(raw) != 10:
            raise ValueError
        return date.fromisoformat(raw)
    except ValueError:
        raise BadRequest(f"{name}={raw!r} is not a date (YYYY-MM-DD)") from None


def date_param(request: Request, name: str) -> date:
    value = parse_date(name, request.query_params.get(name))
    assert value is not None
    return value


def check_range(request: Request, start: date, end: date, start_name: str = "start",
                end_name: str = "end") -> tuple[date, date]:
    if end < start:
        raise BadRequest(f"{end_name} {end} is before {start_name} {start}")
    if start < FIRST_DAY or end > LAST_DAY:
        raise BadRequest(f"{start_name} and {end_name} must lie within {FIRST_DAY}..{LAST_DAY}")
    limit = request.app.state.settings.kpi_max_range_days
    days = (end - start).days + 1
    if days > limit:
        raise BadRequest(f"range is {days} days, over the {limit}-day maximum (KPI_MAX_RANGE_DAYS)")
    return start, end


def date_range(request: Request, start_name: str = "start", end_name: str = "end") -> tuple[date, date]:
    return check_range(request, date_param(request, start_name), date_param(request, end_name),
                       start_name, end_name)


def choice(request: Request, name: str, allowed: tuple[str, ...], default: str | None) -> str | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if raw not in allowed:
        raise BadRequest(f"{name}={raw!r}: use one of {', '.join(allowed)}")
    return raw


def positive_int(request: Request, name: str, default: int | None, maximum: int, minimum: int = 1) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name}={raw!r} is not an integer") from None
    if not minimum <= value <= maximum:
        raise BadRequest(f"{name}={value} is out of range {minimum}..{maximum}")
    return value
