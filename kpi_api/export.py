"""Raw-event exports: scan the shard streams in chunks and stream rows out in constant memory.

Stream IDs are arrival times, events carry their own (corrected) event time, and an event can
arrive up to the late window after it happened (or a little before, within the clock margin).
So an export of event days [start, end] reads each shard's IDs from ``start - margin`` to
``end + 1 day + late window`` with XRANGE ``COUNT`` chunks and keeps the events whose event time
falls in the range: the same day keys every KPI uses. Memory is one chunk, whatever the size.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import date, datetime, timezone
from typing import Any

import redis
import redis.asyncio as aredis

from schemas import keyspace
from schemas.keyspace import ENTRY_EVENTS_B
from schemas.catalog import STORED_LIST_DECODER, StoredEvent
from schemas.days import DAY_MS, day_start_ms
from schemas.settings import Settings

Filter = Callable[[StoredEvent], bool]


def bounds(s: Settings, start: date, end: date) -> tuple[int, int, int, int]:
    """(first event ms, last event ms, first stream ID ms, last stream ID ms)."""
    lo = day_start_ms(start)
    hi = day_start_ms(end) + DAY_MS - 1
    return lo, hi, max(0, lo - s.future_margin_seconds * 1000 - 60_000), hi + s.late_window_ms + 60_000


def event_filter(lo: int, hi: int, event_type: str | None) -> Filter:
    return lambda ev: lo <= ev.ts <= hi and (event_type is None or ev.name == event_type)


def _next_id(last: bytes) -> str:
    ms, _, seq = last.decode().partition("-")
    return f"{ms}-{int(seq) + 1}"


def _plan(s: Settings, start: date, end: date, event_type: str | None) -> tuple[Filter, str, str]:
    """What to keep, and the stream ID range each shard is read over."""
    lo, hi, id_lo, id_hi = bounds(s, start, end)
    return event_filter(lo, hi, event_type), f"{id_lo}-0", f"{id_hi}-18446744073709551615"


def _page(entries: list[Any], keep: Filter, chunk: int) -> tuple[list[StoredEvent], str | None]:
    """One XRANGE page: the events kept, and the ID to read from next (None: the shard is done)."""
    out = [ev for _, fields in entries for ev in STORED_LIST_DECODER.decode(fields[ENTRY_EVENTS_B]) if keep(ev)]
    return out, _next_id(entries[-1][0]) if len(entries) == chunk else None


async def scan(r: aredis.Redis, s: Settings, start: date, end: date,
               event_type: str | None) -> AsyncIterator[list[StoredEvent]]:
    keep, first, last = _plan(s, start, end, event_type)
    for shard in range(s.stream_shards):
        cursor: str | None = first
        while cursor is not None:
            entries = await r.xrange(keyspace.stream(shard), min=cursor, max=last, count=s.export_chunk)
            out, cursor = _page(entries, keep, s.export_chunk)
            if out:
                yield out


def scan_sync(r: redis.Redis, s: Settings, start: date, end: date,
              event_type: str | None) -> Iterator[list[StoredEvent]]:
    """``scan`` for the XLSX writer, which runs in a worker thread."""
    keep, first, last = _plan(s, start, end, event_type)
    for shard in range(s.stream_shards):
        cursor: str | None = first
        while cursor is not None:
            entries = r.xrange(keyspace.stream(shard), min=cursor, max=last, count=s.export_chunk)
            out, cursor = _page(entries, keep, s.export_chunk)
            if out:
                yield out


def iso(ms: int | None) -> str:
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


# Seed 001's export: one row per stored event (pseudonyms only: nothing raw is ever stored).
EVENT_COLUMNS = ("event_id", "ts_utc", "event_name", "event_version", "anon_village_id", "session_id",
                 "app_version", "platform", "client_ts", "server_received_ts", "payload")

# Seed 002's export columns, mapped: user_id and anonymous_id are the pseudonyms of the envelope's
# second actor (an event without either, from another route, shows its village as the anonymous
# id), source is the platform, ip_address the masked IP its route stored (never a raw one).
SEED002_COLUMNS = ("id", "created_at", "event_type", "user_id", "anonymous_id", "source", "ip_address", "payload")


def event_id(raw: str) -> str:
    """Stored ids are compact hex; exports show the UUID the client sent."""
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return raw


def event_row(ev: StoredEvent) -> list[Any]:
    return [event_id(ev.event_id), iso(ev.ts), ev.name, ev.version, ev.village, ev.session or "", ev.app_version,
            ev.platform, iso(ev.client_ts), iso(ev.received), json.dumps(ev.payload, separators=(",", ":"))]


def seed002_row(ev: StoredEvent) -> list[Any]:
    second = ev.user is not None or ev.anonymous is not None
    anonymous = (ev.anonymous or "") if second else ev.village
    return [event_id(ev.event_id), iso(ev.ts), ev.name, ev.user or "", anonymous, ev.platform,
            (ev.client or {}).get("ip", ""), json.dumps(ev.payload, separators=(",", ":"))]


async def csv_stream(chunks: AsyncIterator[list[StoredEvent]], header: tuple[str, ...],
                     row: Callable[[StoredEvent], list[Any]], limit: int) -> AsyncIterator[bytes]:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    yield buf.getvalue().encode()
    sent = 0
    async for chunk in chunks:
        buf.seek(0)
        buf.truncate()
        for ev in chunk:
            if limit and sent >= limit:
                break
            w.writerow(row(ev))
            sent += 1
        yield buf.getvalue().encode()
        if limit and sent >= limit:
            return


def write_xlsx(r: redis.Redis, s: Settings, start: date, end: date, event_type: str | None) -> str:
    """Write the workbook to a temporary file (openpyxl's write-only mode streams rows to disk)."""
    from openpyxl import Workbook

    wb = Workbook(write_only=True)
    ws = wb.create_sheet("events")
    ws.append(list(EVENT_COLUMNS))
    limit = min(s.export_xlsx_max_rows, s.export_max_rows or s.export_xlsx_max_rows)
    sent = 0
    for chunk in scan_sync(r, s, start, end, event_type):
        for ev in chunk:
            if sent >= limit:
                break
            ws.append(event_row(ev))
            sent += 1
        if sent >= limit:
            break
    fd, path = tempfile.mkstemp(suffix=".xlsx", prefix="analytics-export-")
    os.close(fd)
    wb.save(path)
    return path


def file_chunks(path: str, size: int = 64 * 1024) -> Iterator[bytes]:
    try:
        with open(path, "rb") as f:
            while block := f.read(size):
                yield block
    finally:
        os.unlink(path)
