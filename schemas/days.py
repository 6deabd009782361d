"""UTC day arithmetic shared by the workers and the API: keys use ``YYYY-MM-DD`` of event time."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

DAY_MS = 86_400_000
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
EPOCH_DAY = date(1970, 1, 1)


_MS = timedelta(milliseconds=1)
_FLOAT_EXACT_S = 2**31  # |timestamp| below this: a float's microseconds round exactly


def to_ms(dt: datetime) -> int:
    """Epoch milliseconds of an aware datetime, floored (as ``(dt - EPOCH) // 1 ms``).

    ``timestamp()`` is C and several times cheaper than timedelta arithmetic; within +-2**31 s
    (1901-2038) the float is within 0.25 us of the true value, so rounding it to microseconds is
    exact. Outside that range the exact timedelta arithmetic is used.
    """
    t = dt.timestamp()
    if -_FLOAT_EXACT_S < t < _FLOAT_EXACT_S:
        return round(t * 1_000_000) // 1000
    return (dt - EPOCH) // _MS


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
