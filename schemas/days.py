"""UTC day arithmetic shared by the workers and the API: keys use ``YYYY-MM-DD`` of event time."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

DAY_MS = 86_400_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EPOCH_DAY = date(1970, 1, 1)


MS = timedelta(milliseconds=1)  # built once: constructing it per call was most of to_ms


def to_ms(dt: datetime) -> int:
    """Epoch milliseconds of an aware datetime, floored; exact (integer timedelta arithmetic)."""
    return (dt - EPOCH) // MS


def day_number(ts_ms: int) -> int:
    return ts_ms // DAY_MS


def day_of_ms(ts_ms: int) -> str:
    return (EPOCH_DAY + timedelta(days=ts_ms // DAY_MS)).isoformat()


def day_of_number(n: int) -> str:
    return (EPOCH_DAY + timedelta(days=n)).isoformat()


def day_start_ms(day: date) -> int:
    return (day - EPOCH_DAY).days * DAY_MS


def days_between(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]
