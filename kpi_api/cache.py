"""The KPI answer cache: short lifetime while a day can still change, long once it is closed.

A day is open until the late window after its end has passed (events may still arrive for it);
any answer that touches an open day lives ``KPI_CACHE_SECONDS``, any other
``KPI_CACHE_CLOSED_SECONDS``. The clock is injected so tests can move time instead of sleeping.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import date
from typing import Any

from schemas.days import DAY_MS, day_start_ms
from schemas.settings import Settings

Clock = Callable[[], float]


class TTLCache:
    def __init__(self, clock: Clock, max_items: int = 2048) -> None:
        self.clock = clock
        self.max_items = max_items
        self._items: OrderedDict[Any, tuple[float, Any]] = OrderedDict()

    def get(self, key: Any) -> Any | None:
        hit = self._items.get(key)
        if hit is None:
            return None
        expires, value = hit
        if expires <= self.clock():
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: Any, value: Any, ttl_s: float) -> None:
        self._items[key] = (self.clock() + ttl_s, value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)


def day_is_open(day: date, now_s: float, settings: Settings) -> bool:
    """True while events for ``day`` may still be applied (its end plus the late window is ahead)."""
    return day_start_ms(day) + DAY_MS + settings.late_window_ms > now_s * 1000


def ttl_for(last_day: date, now_s: float, settings: Settings) -> int:
    if day_is_open(last_day, now_s, settings):
        return settings.kpi_cache_seconds
    return settings.kpi_cache_closed_seconds
