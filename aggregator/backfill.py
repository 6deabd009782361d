"""Backfill: rebuild the KPIs of a range of UTC days from the events the streams still retain.

Idempotent: the days' aggregates are deleted, then every retained event of those days is applied
again by the same ops the workers use (late events stay out, by the same arrival-time rule).
Sessions are paired in memory from the whole retained stream, keyed by the start's day
(``kinds.session.Pairing``). An
all-time top-N table first gives back what the rebuilt days had added. Seed 002's "idempotent
daily aggregation for a given date" is ``analytics-backfill --start D --end D``.

Run it when the workers have caught up (it refuses while entries are pending, unless --force):
an entry still pending would be applied by its worker and by the backfill.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import msgspec
import redis

from aggregator.effects import build, is_late
from aggregator.worker import OPS_ENCODER, pending_total
from infra.progress import Progress
from kinds import rollups, session
from schemas import keyspace, profiles
from schemas.keyspace import ENTRY_EVENTS_B
from schemas.catalog import STORED_LIST_DECODER, StoredEvent
from infra.connection import open_sync
from schemas.days import day_of_ms, days_between
from schemas.kpis import Kpi
from schemas.settings import Settings
from schemas.sketch import LOG_GAMMA

log = logging.getLogger("aggregator.backfill")
APPLY_LUA = Path(__file__).with_name("apply.lua").read_text()
CHUNK_EVENTS = 1000


def _retained(
    client: redis.Redis, shard: int, progress: Progress | None = None, count: int = 200
) -> Iterator[StoredEvent]:
    start = "-"
    while True:
        entries = client.xrange(keyspace.stream(shard), min=start, count=count)
        if progress is not None:
            progress.advance(len(entries))
        for entry_id, fields in entries:
            try:
                yield from STORED_LIST_DECODER.decode(fields[ENTRY_EVENTS_B])
            except (KeyError, msgspec.DecodeError, msgspec.ValidationError):
                log.warning("skipping undecodable entry %s (the workers dead-letter it)", entry_id)
        if len(entries) < count:
            return
        start = "(" + entries[-1][0].decode()


def _day_keys(shard: int, day: str, kpis: tuple[Kpi, ...]) -> list[str]:
    keys = [keyspace.dau(shard, day), keyspace.counts(shard, day), keyspace.session_sketch(shard, day)]
    keys += [keyspace.kpi(shard, k.name, day) for k in kpis if k.own_aggregate]
    return keys


def _forget_days(client: redis.Redis, shard: int, days: list[str], kpis: tuple[Kpi, ...]) -> None:
    pipe = client.pipeline(transaction=True)
    for kpi in kpis:
        if kpi.kind == "top" and kpi.all_time:
            for day in days:
                for member, score in client.zrange(keyspace.kpi(shard, kpi.name, day), 0, -1, withscores=True):
                    pipe.zincrby(keyspace.kpi_all_time(shard, kpi.name), -score, member)
    for day in days:
        pipe.delete(*_day_keys(shard, day, kpis))
    pipe.execute()


def backfill(
    client: redis.Redis, settings: Settings, start: date, end: date, force: bool = False,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Rebuild ``start``..``end``; returns how many events were applied and sessions paired.

    ``progress`` advances by each retained stream entry read (of all shards' ``XLEN``)."""
    if not force and pending_total(client, settings):
        raise SystemExit("entries are still pending: let the workers catch up first (or --force)")
    kpis = profiles.load(settings.analytics_profile).kpis
    wanted = {d.isoformat() for d in days_between(start, end)}
    script = client.register_script(APPLY_LUA)
    args_head = ["", "0", settings.metrics_retention_days * 86400,
                 (settings.late_window_hours + settings.max_session_hours) * 3600, repr(LOG_GAMMA)]
    totals = {"events": 0, "sessions": 0}
    rollups.forget(client, sorted(wanted))
    for shard in range(settings.stream_shards):
        _forget_days(client, shard, sorted(wanted), kpis)
        pairing = session.Pairing()
        chunk: list[StoredEvent] = []

        def flush() -> None:
            if chunk:
                fx = build(shard, chunk, settings.late_window_ms, kpis, rebuild=True)
                script(keys=fx.keys, args=[*args_head, OPS_ENCODER.encode(fx.ops)])
                totals["events"] += fx.applied
                chunk.clear()

        for ev in _retained(client, shard, progress):
            if is_late(ev, settings.late_window_ms):
                continue
            pairing.add(ev)
            if day_of_ms(ev.ts) in wanted:
                chunk.append(ev)
                if len(chunk) >= CHUNK_EVENTS:
                    flush()
        flush()
        durations = pairing.durations(wanted)
        for i in range(0, len(durations), CHUNK_EVENTS):
            keys, ops = session.duration_ops(shard, durations[i : i + CHUNK_EVENTS])
            script(keys=keys, args=[*args_head, OPS_ENCODER.encode(ops)])
        totals["sessions"] += len(durations)
    # after the rebuild too: a read during it may have rolled up a half-built day
    rollups.forget(client, sorted(wanted))
    return totals


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="analytics-backfill", description=__doc__.split("\n")[0])
    parser.add_argument("--start", required=True, type=date.fromisoformat, help="first UTC day (YYYY-MM-DD)")
    parser.add_argument("--end", required=True, type=date.fromisoformat, help="last UTC day, inclusive")
    parser.add_argument("--force", action="store_true", help="run even while entries are pending")
    args = parser.parse_args(argv)
    if args.end < args.start:
        raise SystemExit("--end is before --start")
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level)
    client = open_sync(settings.redis_url)
    entries = sum(client.xlen(keyspace.stream(shard)) for shard in range(settings.stream_shards))
    with Progress("backfill", entries, unit="entries") as progress:
        result = backfill(client, settings, args.start, args.end, args.force, progress)
    print(f"rebuilt {args.start}..{args.end}: {result['events']} events, {result['sessions']} sessions")


if __name__ == "__main__":
    main()
