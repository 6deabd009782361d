"""The late window: per event, measured from the server's arrival time, edges included."""

from __future__ import annotations

import dataclasses

import pytest
import redis

from aggregator.worker import Worker, ensure_groups, pending_total
from schemas import keyspace
from schemas.days import day_of_ms
from schemas.settings import Settings
from tests.streamfeed import append, count, late_events, now_ms, stat, stored

HOUR = 3_600_000


@pytest.mark.parametrize("hours", [48, 1])
def test_events_just_inside_count_and_just_outside_are_kept_aside(
    r: redis.Redis, settings: Settings, hours: int
) -> None:
    s = dataclasses.replace(settings, late_window_hours=hours, stream_shards=1)
    ensure_groups(r, s)
    received = now_ms()
    window = hours * HOUR
    inside = [
        stored("dialogue_open", "in-edge", received - window, received),  # exactly the window old
        stored("dialogue_open", "in-1ms", received - window + 1, received),
    ]
    outside = [
        stored("dialogue_open", "out-1ms", received - window - 1, received),
        stored("dialogue_open", "out-far", received - 3 * window, received),
    ]
    # one entry holding both kinds: the window is applied per event, not per entry
    append(r, s, [inside[0], outside[0], inside[1], outside[1]])
    Worker(r, s, consumer="w").run(burst=True)
    days = {day_of_ms(e.ts) for e in inside + outside}
    assert sum(count(r, s, "dialogue_open", d) for d in days) == len(inside)
    assert sum(r.pfcount(keyspace.dau(0, d)) for d in days) == len(inside)  # late ones aren't active
    assert sorted(e.event_id for e in late_events(r, s)) == sorted(e.event_id for e in outside)
    assert stat(r, s, "late") == 2 and stat(r, s, "applied") == 2
    assert pending_total(r, s) == 0


def test_arrival_time_decides_not_processing_time(r: redis.Redis, settings: Settings) -> None:
    """A backlog applied days later (a long worker outage) still counts what arrived in time."""
    s = dataclasses.replace(settings, stream_shards=1)
    ensure_groups(r, s)
    received = now_ms() - 5 * 24 * HOUR  # sat in the stream for five days
    in_time = stored("command_executed", "a", received - 47 * HOUR, received)
    too_late = stored("command_executed", "b", received - 49 * HOUR, received)
    append(r, s, [in_time, too_late])
    w = Worker(r, s, consumer="w")
    w.run(burst=True)
    assert (w.applied, w.late) == (1, 1)
    days = {day_of_ms(in_time.ts), day_of_ms(too_late.ts)}
    assert sum(count(r, s, "command_executed", d) for d in days) == 1
    assert [e.event_id for e in late_events(r, s)] == [too_late.event_id]
