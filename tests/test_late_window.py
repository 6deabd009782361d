"""The late window: per event, measured from the server's arrival time, edges included."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
import redis

from aggregator.worker import Worker, ensure_groups, pending_total
from schemas import keyspace
from schemas.days import day_of_ms
from schemas.settings import Settings
from tests.conftest import BACKENDS
from tests.streamfeed import append, count, late_events, now_ms, stat, stored
from tests.test_collector_support import HEADERS, ROUTE, batch, client, event, iso, metric, now

HOUR = 3_600_000

# the core pipeline tests run on a single node and on a 3-master cluster
pytestmark = pytest.mark.parametrize("redis_url", BACKENDS, indirect=True)


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


def test_the_collector_tells_the_client_which_events_are_already_late(env, r, settings, rng) -> None:
    """Accepted but past the window on arrival: counted apart in the answer and in a metric,
    on the whole-batch path and on the per-event one (a batch holding one bad event)."""
    old = iso(now() - timedelta(hours=settings.late_window_hours + 1))
    fresh = [event(rng) for _ in range(3)]
    late = [event(rng, ts_utc=old) for _ in range(2)]
    with client(env) as c:
        before = metric(c.get("/metrics").text, "collector_events_late_total")
        first = c.post(ROUTE, headers=HEADERS, json=batch(fresh + late))
        assert first.status_code == 202, first.text
        assert (first.json()["accepted"], first.json()["late"]) == (5, 2)
        again = c.post(ROUTE, headers=HEADERS, json=batch(fresh + late))
        assert again.json()["late"] == 0 and again.json()["duplicates"] == 5  # already told
        mixed = [event(rng, ts_utc=old), event(rng, "no_such_event"), event(rng)]
        third = c.post(ROUTE, headers=HEADERS, json=batch(mixed))
        assert (third.json()["accepted"], third.json()["late"], len(third.json()["rejected"])) == (2, 1, 1)
        after = metric(c.get("/metrics").text, "collector_events_late_total")
    assert after - before == 3
