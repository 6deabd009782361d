"""The dead-letter streams for operators: list, count and replay failed events (Snowplow's idea).

Two kinds of entry, in ``keyspace.DEAD_LETTER`` (the collector's) and in each shard's
``keyspace.worker_dead_letter`` (the workers', per shard so that filing is atomic with the ack):

- a collector rejection (field ``r``: a ``Rejection`` as JSON) with a redacted copy of the event
  whose identifiers are already pseudonyms (``pseudo:<hex>``, hashed with the salt of the event's
  own time). Replay re-validates that copy with today's catalog through the collector's own
  ``Validator`` and ``EventStore`` (same dedup, same append script), taking the ``pseudo:`` values
  as the stored pseudonyms instead of hashing them again, and keeping the original arrival time and
  clock-skew correction. Free text was redacted on the way in, so an event that needed it stays dead.
- a worker's poison entry (``r`` names the ``stream`` and ``entry_id``, ``e`` the stored body):
  replay appends the body to its stream again, for the workers to apply after a fix (one
  transaction with the deletion: the shard's stream and dead-letter stream share a hash tag).

Replayed entries (stored, or found to be duplicates of stored ones) are deleted from their
dead-letter stream; the others stay, with the errors shown by the replay.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aredis

from collector.privacy import Pseudonymizer
from collector.redact import PSEUDO
from collector.store import EventStore, Rejection
from collector.validate import Validator
from infra.progress import Progress
from schemas import keyspace
from schemas.catalog import STORED_LIST_DECODER, StoredEvent
from schemas.settings import Settings

PLACEHOLDER_SESSION = str(uuid.UUID(int=0))  # stands for a session id that is already a pseudonym


@dataclass
class Entry:
    id: str
    record: dict[str, Any]
    body: bytes | None = None
    source: str = keyspace.DEAD_LETTER  # the dead-letter stream that holds it

    @property
    def kind(self) -> str:
        return "rejection" if "errors" in self.record else "worker"

    @property
    def reason(self) -> str:
        return str(self.record.get("reason", "invalid"))

    @property
    def event_name(self) -> str | None:
        name = self.record.get("event_name")
        return name if isinstance(name, str) else None

    def summary(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "source": self.source, **self.record}


def sources(settings: Settings) -> list[str]:
    """Every dead-letter stream: the collector's, then each shard's worker stream."""
    return [keyspace.DEAD_LETTER] + [
        keyspace.worker_dead_letter(shard) for shard in range(settings.stream_shards)
    ]


@dataclass
class ReplayReport:
    replayed: int = 0
    duplicates: int = 0
    still_failing: list[dict[str, Any]] = field(default_factory=list)


async def entries(
    client: aredis.Redis,
    reason: str | None = None,
    event: str | None = None,
    page: int = 500,
    streams: list[str] | None = None,
) -> AsyncIterator[Entry]:
    for stream in streams or [keyspace.DEAD_LETTER]:
        async for entry in _entries_of(client, stream, reason, event, page):
            yield entry


async def _entries_of(
    client: aredis.Redis, stream: str, reason: str | None, event: str | None, page: int
) -> AsyncIterator[Entry]:
    start = "-"
    while True:
        batch = await client.xrange(stream, min=start, max="+", count=page)
        for raw_id, fields in batch:
            try:
                record = msgspec.json.decode(fields.get(keyspace.ENTRY_REASON_B, b"{}"))
            except msgspec.DecodeError:
                record = {"reason": "unreadable"}
            if not isinstance(record, dict):
                record = {"reason": "unreadable"}
            entry = Entry(raw_id.decode(), record, fields.get(keyspace.ENTRY_EVENTS_B), stream)
            if reason is not None and entry.reason != reason:
                continue
            if event is not None and entry.event_name != event:
                continue
            yield entry
        if len(batch) < page:
            return
        start = "(" + batch[-1][0].decode()


async def count(
    client: aredis.Redis,
    reason: str | None = None,
    event: str | None = None,
    streams: list[str] | None = None,
) -> dict[str, Any]:
    by_reason: Counter[str] = Counter()
    async for entry in entries(client, reason, event, streams=streams):
        by_reason[entry.reason] += 1
    return {"total": sum(by_reason.values()), "by_reason": dict(sorted(by_reason.items()))}


def _replay_input(record: dict[str, Any]) -> tuple[bytes, dict[str, str]] | None:
    """The event to re-validate and the pseudonyms it already carries, or None with no copy."""
    event = record.get("event")
    if not isinstance(event, dict):
        return None
    event = dict(event)
    pseudonyms: dict[str, str] = {}
    village = event.get("anon_village_id")
    if isinstance(village, str) and village.startswith(PSEUDO):
        pseudonyms["village"] = village[len(PSEUDO):]
    session = event.get("session_id")
    if isinstance(session, str) and session.startswith(PSEUDO):
        pseudonyms["session"] = session[len(PSEUDO):]
        event["session_id"] = PLACEHOLDER_SESSION
    return msgspec.json.encode(event), pseudonyms


async def replay(
    client: aredis.Redis,
    settings: Settings,
    reason: str | None = None,
    event: str | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> ReplayReport:
    validator = Validator(settings, Pseudonymizer(client, settings))
    store = EventStore(client, settings)
    report = ReplayReport()
    async for entry in entries(client, reason, event, streams=sources(settings)):
        if progress is not None:
            progress.advance()
        if entry.kind == "worker":
            stream = entry.record.get("stream")
            if not isinstance(stream, str) or not entry.body:
                report.still_failing.append({"id": entry.id, "errors": ["no stored body"]})
                continue
            if not dry_run:
                n = len(STORED_LIST_DECODER.decode(entry.body))
                async with client.pipeline(transaction=True) as pipe:
                    pipe.xadd(stream, {keyspace.ENTRY_COUNT: n, keyspace.ENTRY_EVENTS: entry.body})
                    pipe.xdel(entry.source, entry.id)
                    await pipe.execute()
            report.replayed += 1
            continue
        found = _replay_input(entry.record)
        if found is None:
            report.still_failing.append({"id": entry.id, "errors": ["no copy of the event kept"]})
            continue
        raw, pseudonyms = found
        try:
            rej = msgspec.convert(entry.record, Rejection)
        except msgspec.ValidationError as exc:
            report.still_failing.append({"id": entry.id, "errors": [f"unreadable record: {exc}"]})
            continue
        shard = rej.shard if "village" in pseudonyms else None
        checked = await validator.check(rej.index, raw, rej.received, rej.skew, pseudonyms, shard)
        if checked.stored is None:
            report.still_failing.append({"id": entry.id, "errors": checked.errors})
            continue
        if dry_run:
            report.replayed += 1
            continue
        by_shard: dict[int, list[StoredEvent]] = {checked.shard: [checked.stored]}
        flags = await store.write(by_shard, [])
        if sum(sum(f) for f in flags.values()):
            report.replayed += 1
        else:
            report.duplicates += 1
        # deleted only once stored: a crash in between leaves a duplicate that dedup absorbs
        await client.xdel(entry.source, entry.id)
    return report
