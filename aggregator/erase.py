"""A data subject's rights: list one person's raw events, and erase them everywhere.

``find`` and ``erase`` look in every place raw events rest: the shard streams, late streams and
dead-letter streams, the collector's dead-letter stream, the debug buffers left by older versions
(the recent-events view now reads the shard streams, so erasing there takes it out of the view)
and the archive. A person is found through ``aggregator.subjects`` (their raw id under every salt
that still exists).
Aggregates are left alone: they hold no identifier (HyperLogLog registers and counters), so an
erased person still counts in the daily-active numbers of the days they were active, and cannot
be taken out of them. Each erasure leaves an audit record (``keyspace.ERASURES``) with a keyed hash
of the id, never the id. ``analytics-erase USER_ID`` runs it for operators.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import secrets
import sys
import time
import uuid
from typing import Any

import msgspec
import redis

from aggregator import places
from aggregator.purge import current, locked
from aggregator.archive import EVENTS, REJECTIONS, Archive, open_archive, row_event
from aggregator.subjects import Subject, subject
from schemas import keyspace
from schemas.catalog import StoredEvent
from infra.connection import open_sync
from schemas.settings import Settings

AUDIT_MAXLEN = 100_000
AGGREGATES_NOTE = (
    "aggregates are kept: they hold no identifier (HyperLogLog registers, counters), so the "
    "person still counts once in the daily-active numbers of the days they were active, and "
    "cannot be taken out of them; nothing in them leads back to the person"
)


def _event(ev: StoredEvent, place: str) -> dict[str, Any]:
    return {**msgspec.structs.asdict(ev), "place": place}


def _in_range(ts: int, start_ms: int | None, end_ms: int | None) -> bool:
    return (start_ms is None or ts >= start_ms) and (end_ms is None or ts < end_ms)


def _needles(subj: Subject) -> tuple[bytes, ...]:
    return tuple(p.encode() for p in subj.pseudonyms)


def find(client: redis.Redis, settings: Settings, archive: Archive | None, raw_id: str,
         start_ms: int | None = None, end_ms: int | None = None) -> dict[str, Any]:
    """``{"user_id", "pseudonyms", "count", "events"}``: each event once (by event id), with
    ``place`` where it was found first and ``places`` every place that holds it (a late event
    rests in its shard stream and in the late stream; an older version's debug buffer copied
    recent ones)."""
    subj = subject(client, settings, raw_id)
    found: dict[str, dict[str, Any]] = {}
    used: set[str] = set()

    def keep(ev: dict[str, Any]) -> None:
        if not _in_range(ev["ts"], start_ms, end_ms):
            return
        seen = found.get(ev["event_id"])
        if seen is not None:  # a copy (late stream, dead letter, debug buffer): one more place
            if ev["place"] not in seen["places"]:
                seen["places"].append(ev["place"])
            return
        found[ev["event_id"]] = {**ev, "places": [ev["place"]]}
        used.update(ev.get(f) for f in subj.fields if ev.get(f) in subj.pseudonyms)

    if subj.pseudonyms:
        needles = _needles(subj)
        for place in places.streams(settings):
            for e in places.entries(client, place, contains=needles):
                for ev in e.events or ():
                    if subj.matches(ev):
                        keep(_event(ev, place.name))
        for place in places.buffers(settings):
            for _, ev in places.buffer_items(client, place):
                if ev is not None and subj.matches(ev):
                    keep(_event(ev, place.name))
        for e in places.entries(client, places.REJECTIONS, decoded=False, contains=needles):
            event = e.record.get("event")
            if subj.matches_redacted(event):
                ts = int(e.record.get("received") or e.ms)
                eid = _hex(e.record.get("event_id")) or f"rejection:{e.id}"
                if _in_range(ts, start_ms, end_ms) and eid not in found:
                    found[eid] = {"event_id": eid, "ts": ts, "place": "rejections",
                                  "places": ["rejections"], "rejection": e.record}
                    used.update(p for p in subj.pseudonyms if p in str(event))
        if archive is not None:
            for f in archive.files(EVENTS):
                for row in archive.read(f.path):
                    if subj.matches_row(row):
                        keep({**row_event(row), "place": "archive"})
    events = sorted(found.values(), key=lambda ev: (ev["ts"], ev["event_id"]))
    return {"user_id": raw_id, "pseudonyms": sorted(used), "count": len(events), "events": events}


def erase(client: redis.Redis, settings: Settings, archive: Archive | None, raw_id: str,
          requester: str) -> dict[str, Any]:
    """Remove every raw event of ``raw_id``; returns what was removed per place, and audits it."""
    with locked(client) as got:
        if not got:
            raise RuntimeError("a purge holds the lock for over 30 s; retry the erasure")
        return _erase(client, settings, archive, raw_id, requester)


def _erase(client: redis.Redis, settings: Settings, archive: Archive | None, raw_id: str,
           requester: str) -> dict[str, Any]:
    subj = subject(client, settings, raw_id)
    removed: dict[str, int] = {"events": 0, "late": 0, "deadletter": 0, "rejections": 0,
                               "recent": 0, "archive": 0}
    if subj.pseudonyms:
        needles = _needles(subj)
        for place in places.streams(settings):
            kept: dict[str, list[StoredEvent]] = {}
            for e in places.entries(client, place, contains=needles):
                if e.events is None:  # holds the pseudonym but cannot be read: all of it goes
                    kept[e.id] = []
                    removed[place.kind] += 1
                    continue
                mine = [ev for ev in e.events if subj.matches(ev)]
                if mine:
                    kept[e.id] = [ev for ev in e.events if not subj.matches(ev)]
                    removed[place.kind] += len(mine)
            if kept:
                places.rewrite(client, place, kept)
        gone = {e.id: [] for e in places.entries(client, places.REJECTIONS, decoded=False,
                                                  contains=needles)
                if subj.matches_redacted(e.record.get("event"))}
        if gone:
            removed["rejections"] += places.rewrite(client, places.REJECTIONS, gone)
        for place in places.buffers(settings):
            for item, ev in places.buffer_items(client, place):
                if (ev is None and any(n in item for n in needles)) or (ev and subj.matches(ev)):
                    removed["recent"] += int(client.lrem(place.key, 0, item))
        if archive is not None:
            removed["archive"] = erase_archive(archive, subj)
    record = {"subject_hash": subject_hash(client, raw_id), "at": int(time.time() * 1000),
              "requested_by": requester, "removed": removed, "total": sum(removed.values()),
              "salt_epochs": sorted(set(subj.pseudonyms.values()))}
    client.xadd(keyspace.ERASURES, {keyspace.ERASURE_RECORD: msgspec.json.encode(record)},
                maxlen=AUDIT_MAXLEN, approximate=True)
    return record


def erase_archive(archive: Archive, subj: Subject) -> int:
    """Rewrite every archive file holding one of the person's rows without them."""
    n = 0
    for f in archive.files():
        rows = archive.read(f.path)
        if f.table == REJECTIONS:
            kept = [r for r in rows if not subj.matches_redacted(_json(r.get("event")))]
        else:
            kept = [r for r in rows if not subj.matches_row(r)]
        if len(kept) != len(rows):
            archive.replace(f.table, f.path, kept)
            n += len(rows) - len(kept)
    return n


def _hex(event_id: Any) -> str | None:
    """A rejected event's id in the stored events' form (32 hex digits), when it is a UUID."""
    try:
        return uuid.UUID(str(event_id)).hex if event_id else None
    except ValueError:
        return str(event_id)


def _json(text: Any) -> Any:
    try:
        return msgspec.json.decode(text) if isinstance(text, str) else None
    except msgspec.DecodeError:
        return None


def subject_hash(client: redis.Redis, raw_id: str) -> str:
    """A keyed hash of an erased id: the same id always gives the same hash (so a repeated
    request can be recognised), and without the key nobody can test ids against it."""
    client.set(keyspace.ERASURE_KEY, secrets.token_bytes(32), nx=True)
    key = client.get(keyspace.ERASURE_KEY) or b""
    return hmac.new(key, raw_id.encode(), hashlib.sha256).hexdigest()[:32]


def audit(client: redis.Redis, count: int = 100) -> list[dict[str, Any]]:
    """The newest erasure records first."""
    out = []
    for raw_id, fields in client.xrevrange(keyspace.ERASURES, count=count):
        record = msgspec.json.decode(fields[keyspace.ERASURE_RECORD_B])
        out.append({"id": raw_id.decode(), **record})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="analytics-erase",
        description="Erase every raw event of one person (streams, dead letters, debug buffers, "
                    "archive); prints what was removed, per place, as JSON.")
    parser.add_argument("user_id", help="the id as the client sent it (the profile's actor)")
    parser.add_argument("--requested-by", default="operator",
                        help="who asked, for the audit record (default: operator)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    client = open_sync(settings.redis_url)
    settings = current(client, settings)
    report = {**erase(client, settings, open_archive(settings.archive_url), args.user_id,
                      args.requested_by), "aggregates": AGGREGATES_NOTE}
    sys.stdout.write(msgspec.json.encode(report).decode() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
