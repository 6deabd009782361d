"""Purge old data, archiving raw events first: ``analytics-purge`` and the workers' retention trim.

``analytics-purge --older-than-days N`` takes every raw event whose (skew-corrected) event time
falls on a UTC day more than N days before today: from the shard streams, late streams and
dead-letter streams (and the collector's dead letters by arrival day). ``--dry-run`` prints what
would go, per stream and day, and changes nothing. The real run writes the events to the archive
(``aggregator/archive.py``) and only then removes them (``places.rewrite``: an entry keeping some
younger events is replaced by one holding just those, never applied twice). It also deletes
aggregates of days older than ``METRICS_RETENTION_DAYS`` and archive partitions older than
``ARCHIVE_RETENTION_DAYS``.

The workers' periodic trim (``trim``) does the same for stream entries that arrived more than
``ANALYTICS_RETENTION_DAYS`` ago (by entry id: cheap, only old entries are read), so events leave
Redis only through the archive. A shard-stream entry the workers have not applied yet is never
taken: it waits for the next run, so every event is counted before it goes. One process at a time
holds ``keyspace.PURGE_LOCK``.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import secrets
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis

from aggregator import places
from aggregator.archive import EVENTS, REJECTIONS, Archive, event_row, open_archive
from kinds import rollups
from infra.progress import Progress
from schemas import adjusted, keyspace
from schemas.keyspace import ENTRY_EVENTS_B, ENTRY_REASON_B
from schemas.catalog import StoredEvent
from infra.connection import open_sync
from schemas.days import DAY_MS, day_of_ms
from schemas.settings import Settings

LOCK_MS = 600_000
_DAY_KEY = re.compile(rb"^" + keyspace.PREFIX.encode() + rb":\{s\d+\}:.*:(\d{4}-\d{2}-\d{2})$")


@contextlib.contextmanager
def locked(client: redis.Redis, wait_s: float = 30.0) -> Iterator[bool]:
    """Hold the purge lock (True), or give up after ``wait_s`` (False)."""
    token = secrets.token_hex(8)
    deadline = time.monotonic() + wait_s
    got = bool(client.set(keyspace.PURGE_LOCK, token, nx=True, px=LOCK_MS))
    while not got and time.monotonic() < deadline:
        time.sleep(0.1)
        got = bool(client.set(keyspace.PURGE_LOCK, token, nx=True, px=LOCK_MS))
    try:
        yield got
    finally:
        if got:
            client.eval("if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end",
                        1, keyspace.PURGE_LOCK, token)


def current(client: redis.Redis, settings: Settings) -> Settings:
    """``settings`` with the admin's run-time changes (``PATCH /internal/analytics/settings``)."""
    return adjusted.overlay(settings, adjusted.parse(client.hgetall(keyspace.ADJUSTED_SETTINGS)))


def _id_key(eid: str) -> tuple[int, int]:
    ms, _, seq = eid.partition("-")
    return int(ms), int(seq or 0)


class Applied:
    """Which entries of a shard stream the consumer group has applied (delivered, not pending)."""

    def __init__(self, client: redis.Redis, place: places.Place) -> None:
        self.last: tuple[int, int] | None = None
        self.pending: set[str] = set()
        if not place.group:
            return
        try:
            groups = client.xinfo_groups(place.key)
        except redis.ResponseError:
            return
        for g in groups:
            name = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
            if name == place.group:
                last = g["last-delivered-id"]
                self.last = _id_key(last.decode() if isinstance(last, bytes) else last)
        if self.last is None:
            return
        start = "-"
        while True:
            page = client.xpending_range(place.key, place.group, min=start, max="+", count=1000)
            self.pending.update(p["message_id"].decode() for p in page)
            if len(page) < 1000:
                break
            ms, seq = _id_key(page[-1]["message_id"].decode())
            start = f"{ms}-{seq + 1}"

    def __call__(self, place: places.Place, eid: str) -> bool:
        if not place.group:
            return True
        return self.last is not None and _id_key(eid) <= self.last and eid not in self.pending


@dataclass
class Taken:
    """What one run takes from one place: per entry the events that go and those that stay."""

    place: places.Place
    go: dict[str, list[StoredEvent]] = field(default_factory=dict)
    stay: dict[str, list[StoredEvent]] = field(default_factory=dict)
    whole: dict[str, places.Entry] = field(default_factory=dict)  # undecodable / rejections
    days: Counter[str] = field(default_factory=Counter)
    waiting: int = 0  # events old enough but not applied by the workers yet


def _take_entries(client: redis.Redis, place: places.Place, old_day: Any, entry_max: str = "+",
                  whole_entries: bool = False, progress: Progress | None = None) -> Iterator[Taken]:
    """Walk a place (up to entry id ``entry_max``), yielding what goes, one hour bucket of
    entry ids at a time (the archive's file unit)."""
    applied = Applied(client, place)
    taken = Taken(place)
    bucket = None
    start = "-"
    while True:
        page = client.xrange(place.key, min=start, max=entry_max, count=places.PAGE)
        if progress is not None:
            progress.advance(len(page))
        for raw_id, fields in page:
            eid = raw_id.decode()
            b = _id_key(eid)[0] // 3_600_000
            if bucket is not None and b != bucket and (taken.go or taken.whole):
                yield taken
                taken = Taken(place)
            bucket = b
            e = places.Entry(eid, fields)
            events = places.decode(fields) if ENTRY_EVENTS_B in fields else None
            if events is None:
                if ENTRY_REASON_B in fields:
                    with contextlib.suppress(msgspec.DecodeError):
                        record = msgspec.json.decode(fields[ENTRY_REASON_B])
                        e.record = record if isinstance(record, dict) else {}
                day = day_of_ms(int((e.record or {}).get("received") or e.ms)) if place is places.REJECTIONS \
                    else day_of_ms(e.ms)
                if whole_entries or old_day(day):
                    taken.whole[eid] = e
                    taken.days[day] += 1
                continue
            old = events if whole_entries else [ev for ev in events if old_day(day_of_ms(ev.ts))]
            if not old:
                continue
            if not applied(place, eid):
                taken.waiting += len(old)
                continue
            taken.go[eid] = old
            gone = {id(ev) for ev in old}
            taken.stay[eid] = [ev for ev in events if id(ev) not in gone]
            for ev in old:
                taken.days[day_of_ms(ev.ts)] += 1
        if len(page) < places.PAGE:
            break
        ms, seq = _id_key(page[-1][0].decode())
        start = f"{ms}-{seq + 1}"
    if taken.go or taken.whole or taken.waiting:
        yield taken


COPIES = frozenset({"late", "deadletter"})  # kinds whose entries copy a shard-stream entry's body


def _archive(archive: Archive, taken: Taken) -> None:
    """Write what goes to the archive, durably, before anything is deleted.

    The late and worker dead-letter streams hold copies of shard-stream entries (the workers
    keep the entry itself, acknowledged), which leave the shard stream, archived, no later than
    their copies do; so only the shard streams and the collector's rejections are archived, and
    every event has one row.
    """
    place = taken.place
    if place.kind in COPIES:
        return
    files: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for eid, events in taken.go.items():
        name = f"{place.kind}-s{place.shard}-{Archive.bucket(eid)}.parquet"
        for ev in events:
            files.setdefault((EVENTS, day_of_ms(ev.ts), name), []).append(
                event_row(place.kind, place.shard or 0, eid, ev))
    for eid, e in taken.whole.items():
        rec = e.record or {}
        ms = int(rec.get("received") or rec.get("at") or e.ms)
        prefix = "collector" if place.shard is None else f"{place.kind}-s{place.shard}"
        name = f"{prefix}-{Archive.bucket(eid)}.parquet"
        event = rec.get("event")
        files.setdefault((REJECTIONS, day_of_ms(ms), name), []).append({
            "stream": place.kind, "entry_id": eid, "event_id": _text(rec.get("event_id")),
            "event_name": _text(rec.get("event_name")),
            "event_version": v if type(v := rec.get("event_version")) is int else None,
            "reason": str(rec.get("reason", "")), "received": ms,
            "errors": msgspec.json.encode(rec.get("errors", [])).decode(),
            "event": msgspec.json.encode(event).decode() if event is not None
            else (e.fields.get(ENTRY_EVENTS_B) or b"").hex(),
        })
    for (table, day, name), rows in files.items():
        archive.write(table, day, name, rows)


def _text(value: Any) -> str | None:
    """A rejection's field as the archive's string column takes it (a client may send anything)."""
    return None if value is None else value if isinstance(value, str) else msgspec.json.encode(value).decode()


def _remove(client: redis.Redis, taken: Taken) -> int:
    kept: dict[str, list[StoredEvent]] = {eid: taken.stay.get(eid, []) for eid in taken.go}
    kept.update({eid: [] for eid in taken.whole})
    return places.rewrite(client, taken.place, kept) if kept else 0


def _places(settings: Settings) -> list[places.Place]:
    return places.streams(settings) + [places.REJECTIONS]


def _report(report: dict[str, Any], taken: Taken) -> None:
    per = report["streams"].setdefault(taken.place.kind, {})
    for day, n in taken.days.items():
        per[day] = per.get(day, 0) + n
    report["total"] += sum(taken.days.values())
    report["waiting_for_workers"] += taken.waiting


def old_aggregates(client: redis.Redis, before_day: str) -> list[bytes]:
    """Per-day aggregate keys (every shard) of days before ``before_day``."""
    out = []
    for key in client.scan_iter(match=keyspace.SHARD_KEYS, count=1000):
        m = _DAY_KEY.match(key)
        if m and m.group(1).decode() < before_day:
            out.append(key)
    return out


def purge(client: redis.Redis, settings: Settings, archive: Archive | None, older_than_days: int,
          dry_run: bool = False, now_ms: int | None = None,
          progress: Progress | None = None) -> dict[str, Any]:
    """Everything of the UTC days before today - ``older_than_days`` (see the module doc)."""
    settings = current(client, settings)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    cutoff = day_of_ms(now - older_than_days * DAY_MS)
    metrics_cutoff = day_of_ms(now - settings.metrics_retention_days * DAY_MS)
    report: dict[str, Any] = {
        "dry_run": dry_run, "older_than_days": older_than_days, "before_day": cutoff,
        "streams": {}, "total": 0, "waiting_for_workers": 0, "archived": 0, "removed_entries": 0,
        "aggregates": {"before_day": metrics_cutoff, "keys": 0},
        "archive": {"url": settings.archive_url or None, "partitions_deleted": []},
    }
    with locked(client) as got:
        if not got:
            raise SystemExit("another purge holds the lock; try again later")
        for place in _places(settings):
            for taken in _take_entries(client, place, lambda day: day < cutoff, progress=progress):
                _report(report, taken)
                if dry_run:
                    continue
                if archive is not None:
                    _archive(archive, taken)
                    report["archived"] += sum(taken.days.values())
                report["removed_entries"] += _remove(client, taken)
        keys = old_aggregates(client, metrics_cutoff)
        report["aggregates"]["keys"] = len(keys)
        if archive is not None and settings.archive_retention_days > 0:
            archive_cutoff = day_of_ms(now - settings.archive_retention_days * DAY_MS)
            report["archive"]["before_day"] = archive_cutoff
            if dry_run:
                report["archive"]["partitions_deleted"] = sorted(
                    {f.day for f in archive.files() if f.day < archive_cutoff})
            else:
                report["archive"]["partitions_deleted"] = archive.drop_before(archive_cutoff)
        if not dry_run:
            for start in range(0, len(keys), 500):
                client.unlink(*keys[start:start + 500])
            if keys:
                rollups.drop(client)  # and the KPI APIs' cached answers with them
    return report


def trim(client: redis.Redis, settings: Settings, archive: Archive | None,
         now_ms: int | None = None) -> int:
    """The workers' retention: archive, then remove, stream entries that arrived more than
    ``analytics_retention_days`` ago. Returns the events removed; 0 when another process holds the
    lock (it is doing the same)."""
    days = settings.analytics_retention_days
    if days <= 0:
        return 0
    now = int(time.time() * 1000) if now_ms is None else now_ms
    minid = now - days * DAY_MS
    removed = 0
    with locked(client, wait_s=0) as got:
        if not got:
            return 0
        for place in _places(settings):
            for taken in _take_entries(client, place, lambda day: True, entry_max=f"({minid}-0",
                                       whole_entries=True):
                if archive is not None:
                    _archive(archive, taken)
                _remove(client, taken)
                removed += sum(taken.days.values())
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="analytics-purge",
        description="Archive, then delete, raw events older than N days (by event time, UTC day); "
                    "also aggregates older than METRICS_RETENTION_DAYS and archive partitions "
                    "older than ARCHIVE_RETENTION_DAYS. Prints a JSON report.")
    parser.add_argument("--older-than-days", type=int, required=True, metavar="N")
    parser.add_argument("--dry-run", action="store_true", help="report what would go, change nothing")
    args = parser.parse_args(argv)
    if args.older_than_days < 0:
        parser.error("--older-than-days must be 0 or more")
    settings = Settings.from_env()
    client = open_sync(settings.redis_url)
    entries = sum(client.xlen(place.key) for place in _places(settings))
    with Progress("purge", entries, unit="entries") as progress:
        report = purge(client, settings, open_archive(settings.archive_url), args.older_than_days,
                       dry_run=args.dry_run, progress=progress)
    sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
