"""Cold storage of raw events: Apache Parquet files, Hive-partitioned by the event's UTC day.

Layout under ``ANALYTICS_ARCHIVE_URL`` (a local directory, or any ``fsspec`` URL such as ``s3://``
with its package installed)::

    events/date=YYYY-MM-DD/<stream>-s<shard>-<bucket>.parquet      stored events, one row each
    rejections/date=YYYY-MM-DD/collector-<bucket>.parquet          the collector's dead letters

``<stream>`` is ``events``, ``late`` or ``deadletter`` (where the event was kept), ``<bucket>`` the
start (epoch ms) of the UTC hour of stream entry ids the rows came from. The name is a function of
the entries, not of the run: archiving writes a file under a temporary name and renames it over
the final one, merging rows already there by (entry id, event id), and only then are the entries
deleted from their stream. A crash before the delete leaves the entries in place; the rerun
rewrites the same files with the same rows, so nothing is archived twice and nothing is lost.

Columns are typed (times as UTC timestamps in ms, payload as JSON text); identifiers are the
pseudonyms the stream held. DuckDB reads it with
``read_parquet('<url>/events/*/*.parquet', hive_partitioning = true)``.
"""

from __future__ import annotations

import io
import os
import posixpath
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import msgspec
import pyarrow as pa
import pyarrow.parquet as pq

from schemas.catalog import StoredEvent

HOUR_MS = 3_600_000
EVENTS, REJECTIONS = "events", "rejections"
TIME_FIELDS = frozenset({"ts", "ts_original", "received", "client_ts"})  # epoch ms in StoredEvent
_TS = pa.timestamp("ms", tz="UTC")


def _is_json(info: Any) -> bool:
    """A field kept as JSON text: a mapping, a list, anything not a plain scalar."""
    kinds = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
    scalar = (msgspec.inspect.NoneType, msgspec.inspect.StrType, msgspec.inspect.ExtType,
              msgspec.inspect.IntType, msgspec.inspect.BoolType, msgspec.inspect.FloatType)
    return not all(isinstance(k, scalar) for k in kinds)


def _arrow_type(name: str, info: Any) -> pa.DataType:
    """The column type of one StoredEvent field, from its annotation (new fields get one too)."""
    if name in TIME_FIELDS:
        return _TS
    kinds = info.types if isinstance(info, msgspec.inspect.UnionType) else (info,)
    kinds = tuple(k for k in kinds if not isinstance(k, msgspec.inspect.NoneType))
    if _is_json(info) or not kinds:
        return pa.string()
    if all(isinstance(k, msgspec.inspect.StrType | msgspec.inspect.ExtType) for k in kinds):
        return pa.string()
    if all(isinstance(k, msgspec.inspect.BoolType) for k in kinds):
        return pa.bool_()
    if all(isinstance(k, msgspec.inspect.IntType | msgspec.inspect.BoolType) for k in kinds):
        return pa.int64()
    if all(isinstance(k, msgspec.inspect.FloatType | msgspec.inspect.IntType) for k in kinds):
        return pa.float64()
    return pa.string()  # anything else as JSON text


_EVENT_INFO = msgspec.inspect.type_info(StoredEvent)
EVENT_FIELDS = tuple(f.name for f in _EVENT_INFO.fields)
JSON_FIELDS = frozenset(f.name for f in _EVENT_INFO.fields if _is_json(f.type))
EVENT_SCHEMA = pa.schema(
    [("stream", pa.string()), ("shard", pa.int32()), ("entry_id", pa.string())]
    + [(f.name, _arrow_type(f.name, f.type)) for f in _EVENT_INFO.fields]
)
REJECTION_SCHEMA = pa.schema([
    ("stream", pa.string()), ("entry_id", pa.string()), ("event_id", pa.string()),
    ("event_name", pa.string()), ("event_version", pa.int64()), ("reason", pa.string()),
    ("received", _TS), ("errors", pa.string()), ("event", pa.string()),
])
SCHEMAS = {EVENTS: EVENT_SCHEMA, REJECTIONS: REJECTION_SCHEMA}
def event_row(stream: str, shard: int, entry_id: str, ev: StoredEvent) -> dict[str, Any]:
    row: dict[str, Any] = {"stream": stream, "shard": shard, "entry_id": entry_id}
    for name in EVENT_FIELDS:
        value = getattr(ev, name)
        row[name] = msgspec.json.encode(value).decode() if name in JSON_FIELDS else value
    return row


def row_event(row: dict[str, Any]) -> dict[str, Any]:
    """An archive row as the JSON an API answers with (times back to epoch ms, payload parsed)."""
    out = {}
    for name in EVENT_FIELDS:
        value = row.get(name)
        if name in TIME_FIELDS and value is not None and not isinstance(value, int):
            value = int(value.timestamp() * 1000)
        elif name in JSON_FIELDS and isinstance(value, str):
            value = msgspec.json.decode(value)
        out[name] = value
    return out


def row_key(row: dict[str, Any]) -> tuple[Any, ...]:
    return (row.get("stream"), row.get("entry_id"), row.get("event_id"))


@dataclass(frozen=True)
class ArchiveFile:
    table: str  # EVENTS or REJECTIONS
    day: str
    path: str


class Archive:
    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        self.local = "file" in (self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,))

    # -- naming ----------------------------------------------------------------------------
    def path(self, table: str, day: str, name: str) -> str:
        return posixpath.join(self.root, table, f"date={day}", name)

    @staticmethod
    def bucket(entry_id: str) -> int:
        return int(entry_id.split("-", 1)[0]) // HOUR_MS * HOUR_MS

    # -- writing ---------------------------------------------------------------------------
    def write(self, table: str, day: str, name: str, rows: list[dict[str, Any]]) -> int:
        """Merge ``rows`` into one file (by row key), durably; returns the rows it holds."""
        path = self.path(table, day, name)
        merged: dict[tuple[Any, ...], dict[str, Any]] = {}
        if self.fs.exists(path):
            for row in self.read(path):
                merged[row_key(row)] = row
        for row in rows:
            merged[row_key(row)] = row
        self.replace(table, path, list(merged.values()))
        return len(merged)

    def replace(self, table: str, path: str, rows: list[dict[str, Any]]) -> None:
        """``path`` holds exactly ``rows`` afterwards (deleted when none): temp file, then rename."""
        if not rows:
            if self.fs.exists(path):
                self.fs.rm(path)
            return
        schema = SCHEMAS[table]
        data = pa.Table.from_pylist(rows, schema=schema)
        directory = posixpath.dirname(path)
        self.fs.makedirs(directory, exist_ok=True)
        tmp = posixpath.join(directory, f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")
        if self.local:
            with open(tmp, "wb") as fh:
                pq.write_table(data, fh, compression="zstd")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
            fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(fd)  # the rename itself survives a power cut
            finally:
                os.close(fd)
        else:
            buf = io.BytesIO()
            pq.write_table(data, buf, compression="zstd")
            self.fs.pipe_file(tmp, buf.getvalue())
            self.fs.mv(tmp, path)

    # -- reading ---------------------------------------------------------------------------
    def read(self, path: str) -> list[dict[str, Any]]:
        with self.fs.open(path, "rb") as fh:
            return pq.read_table(fh).to_pylist()

    def files(self, table: str | None = None) -> Iterator[ArchiveFile]:
        for name in (table,) if table else (EVENTS, REJECTIONS):
            base = posixpath.join(self.root, name)
            if not self.fs.exists(base):
                continue
            for part in sorted(self.fs.ls(base, detail=False)):
                leaf = posixpath.basename(part.rstrip("/"))
                if not leaf.startswith("date="):
                    continue
                for path in sorted(self.fs.ls(part, detail=False)):
                    if path.endswith(".parquet") and not posixpath.basename(path).startswith("."):
                        yield ArchiveFile(name, leaf.removeprefix("date="), path)

    def count(self) -> dict[str, int]:
        """Rows at rest per table (from the files' footers, not their data)."""
        out = {EVENTS: 0, REJECTIONS: 0}
        for f in self.files():
            with self.fs.open(f.path, "rb") as fh:
                out[f.table] += pq.ParquetFile(fh).metadata.num_rows
        return out

    # -- deleting --------------------------------------------------------------------------
    def drop_before(self, day: str) -> list[str]:
        """Delete every partition of a day before ``day``; returns the days deleted."""
        dropped = []
        for name in (EVENTS, REJECTIONS):
            base = posixpath.join(self.root, name)
            if not self.fs.exists(base):
                continue
            for part in self.fs.ls(base, detail=False):
                leaf = posixpath.basename(part.rstrip("/"))
                if leaf.startswith("date=") and leaf.removeprefix("date=") < day:
                    self.fs.rm(part, recursive=True)
                    dropped.append(leaf.removeprefix("date="))
        return sorted(set(dropped))


def open_archive(url: str) -> Archive | None:
    """The archive ``ANALYTICS_ARCHIVE_URL`` names, or None when it is empty (no archive)."""
    if not url:
        return None
    try:
        return Archive(url)
    except (ImportError, ValueError) as exc:  # e.g. s3:// without s3fs installed
        raise SystemExit(f"configuration error: ANALYTICS_ARCHIVE_URL={url!r}: {exc}") from None
