"""Writing accepted events (one atomic script per shard) and rejected ones (the dead-letter stream)."""

from __future__ import annotations

import time
from pathlib import Path

from typing import Any

import msgspec
import redis
import redis.asyncio as aredis
from redis.exceptions import NoScriptError

from collector.native_plan import native_batch
from schemas import adjusted, keyspace
from infra.connection import is_cluster
from infra.pipelined import Pipelined
from schemas.catalog import STORED_ENCODER, StoredEvent, compact
from schemas.settings import Settings

APPEND_LUA = Path(__file__).with_name("append.lua").read_text()
MAX_PER_ENTRY = 65_535  # array16 header in append.lua

# An accepted event ready for its shard's script: (event id as its 16 bytes, the msgpack
# StoredEvent in its compact form, its dedup hour: the hour of the client's own event time,
# before skew correction, so that a resend meets its first send). The validator builds these;
# ``encoded`` turns a StoredEvent (a dead-letter replay) into one.
Encoded = tuple[bytes, bytes, int]
MAX_BUCKETS = 250  # dedup buckets per script call (one byte per event names its bucket)
# the compiled batch path's shard lists (``native_batch.Packed``): sent as they are
PACKED: type | tuple[()] = native_batch.Packed if native_batch is not None else ()


def encoded(ev: StoredEvent) -> Encoded:
    original = ev.ts if ev.ts_original is None else ev.ts_original
    return (
        bytes.fromhex(ev.event_id),  # type: ignore[arg-type]
        STORED_ENCODER.encode(compact(ev)),
        keyspace.dedup_hour(original),
    )


def _chunks(items: list[Encoded]) -> list[list[Encoded]]:
    """The calls a shard's events take: at most MAX_PER_ENTRY events and MAX_BUCKETS hours each."""
    if len(items) <= MAX_PER_ENTRY and (
        len(items) <= MAX_BUCKETS or len({item[2] for item in items}) <= MAX_BUCKETS
    ):
        return [items] if items else []  # the usual case: one call
    out: list[list[Encoded]] = [[]]
    hours: set[int] = set()
    for item in items:
        if len(out[-1]) >= MAX_PER_ENTRY or (item[2] not in hours and len(hours) >= MAX_BUCKETS):
            out.append([])
            hours = set()
        hours.add(item[2])
        out[-1].append(item)
    return out if out[0] else []


def array_header(n: int) -> bytes:
    """The msgpack array header of ``n`` items (the stream entry is header + the events)."""
    if n < 16:
        return bytes((0x90 | n,))
    if n < 65_536:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def entry(bodies: list[bytes] | tuple[bytes, ...]) -> bytes:
    """A stream entry's ``e`` field: the msgpack array of these encoded events."""
    return array_header(len(bodies)) + b"".join(bodies)


class Rejection(msgspec.Struct):
    """A rejected event as the dead-letter stream keeps it: reasons, never raw identifiers."""

    index: int
    event_id: str | None
    event_name: str | None
    event_version: int | None
    errors: list[str]
    received: int
    event: dict[str, object] | None = None
    reason: str = "invalid"  # too_large, malformed, unknown_event, invalid, future (metrics label)
    skew: int = 0  # ms the request's clock-skew correction added, so a replay corrects alike
    shard: int | None = None  # the actor's shard, computed from the raw id before it was hashed


class NotDurable(redis.RedisError):
    """The append did not reach the replicas / the disk that ``ANALYTICS_WAIT_*`` ask for in time.

    The events are stored on the primary: a resend is answered as duplicates, and that answer
    waits for the same durability again (the script touches a marker so there is a write to wait
    for), so a 2xx always means the durability asked for."""


class EventStore:
    def __init__(self, redis: aredis.Redis, settings: Settings, link: Pipelined | None = None) -> None:
        self.redis = redis
        self.settings = settings
        self.cluster = is_cluster(redis)
        self.base_settings = settings
        self._followed_at = float("-inf")
        self.append = redis.register_script(APPEND_LUA)
        self.wait_replicas = max(0, settings.analytics_wait_replicas)
        self.wait_aof = settings.analytics_wait_aof
        self.durable = "1" if (self.wait_replicas or self.wait_aof) else "0"
        # the process's pipelined connection (single node), unless there are WAITs to send: a
        # WAIT holds the connection it runs on, which every request of the process shares
        self.link = link if self.durable == "0" else None
        self.marker_ttl = settings.late_window_hours * 3600 + settings.future_margin_seconds
        self._names: dict[tuple[int, int], str] = {}  # (shard, hour) -> its dedup bucket's key

    async def follow_settings(self) -> None:
        """Overlay the admin's run-time retention, re-read at most every ``REFRESH_S`` seconds."""
        now = time.monotonic()
        if now < self._followed_at + adjusted.REFRESH_S:
            return
        self._followed_at = now
        overrides = adjusted.parse(await self.redis.hgetall(keyspace.ADJUSTED_SETTINGS))
        self.settings = adjusted.overlay(self.base_settings, overrides)

    def _bucket(self, shard: int, hour: int) -> str:
        """``keyspace.dedup_bucket``, remembered: a process writes the same few hours' buckets."""
        name = self._names.get((shard, hour))
        if name is None:
            if len(self._names) > 4096:
                self._names.clear()
            name = self._names[(shard, hour)] = keyspace.dedup_bucket(shard, hour)
        return name

    def _minid(self) -> str:
        """Trim the stream as it grows only when there is no archive: with one, events leave the
        streams through it (the workers' ``purge.trim``), never straight from here."""
        days = self.settings.analytics_retention_days
        if days <= 0 or self.settings.archive_url:
            return "0"
        return str(int(time.time() * 1000) - days * 86_400_000)

    async def write(
        self,
        by_shard: dict[int, list[Encoded]] | dict[int, list[StoredEvent]],
        rejections: list[Rejection],
        marker_ttl: int | None = None,
    ) -> dict[int, list[int]]:
        """Store events and rejections in one round trip; return per shard the stored flags.

        ``marker_ttl`` (s) overrides how long the idempotency markers last (imports keep theirs
        for the retention period, so re-running an import is answered as duplicates).
        """
        await self.follow_settings()
        minid = self._minid()
        ttl = marker_ttl or self.marker_ttl
        calls: list[tuple[int, int, list[Any]]] = []  # (shard, numkeys, EVALSHA keys + args)
        for shard, events in by_shard.items():
            if not events:
                continue
            if isinstance(events, PACKED):
                packed = events.call_args(MAX_PER_ENTRY, MAX_BUCKETS)
                if packed is not None:  # the usual case: one call, its arguments built in C
                    hours, where, ids, body, lens = packed
                    keys = [keyspace.stream(shard), *(self._bucket(shard, h) for h in hours)]
                    calls.append((shard, len(keys), [*keys, ttl, minid, where, ids, body, lens, self.durable]))
                    continue
                events = list(events)
            # a shard's list is of one kind: Encoded from the validator, StoredEvent from a replay
            items = [encoded(e) for e in events] if isinstance(events[0], StoredEvent) else events
            for chunk in _chunks(items):  # type: ignore[arg-type]
                ids_of, bodies, hours = zip(*chunk)  # one pass each, in C
                ids = b"".join(ids_of)
                if len(ids) != 16 * len(chunk):
                    raise ValueError("a stored event id is not 16 bytes")
                # hour -> its bucket's position among the keys, in order of first appearance
                slots = {h: i for i, h in enumerate(dict.fromkeys(hours), 1)}
                where = bytes(map(slots.__getitem__, hours))
                keys = [keyspace.stream(shard), *(self._bucket(shard, h) for h in slots)]
                calls.append((shard, len(keys), [
                    *keys, ttl, minid, where, ids,
                    entry(bodies), ",".join(map(str, map(len, bodies))), self.durable,
                ]))
        sha = self.append.sha
        # EVALSHA straight away: redis-py's Script in a pipeline asks SCRIPT EXISTS first, one
        # more round trip per request; a NOSCRIPT reply (a restarted or flushed server) loads
        # the script and runs just those calls again (a NOSCRIPT call changed nothing).
        # With ANALYTICS_WAIT_*, WAIT / WAITAOF follow the appends on the same connection of each
        # node written (they wait for that connection's writes), in the same round trip.
        waits = self._waits(calls)
        results = await self._execute(sha, calls, waits, rejections)
        missing = [i for i, r in enumerate(results[: len(calls)]) if isinstance(r, NoScriptError)]
        if missing:
            if self.link is not None:  # the connection that just answered NOSCRIPT
                await self.link.call("SCRIPT", "LOAD", APPEND_LUA)
            else:
                await self.redis.script_load(APPEND_LUA)
            retried = [calls[i] for i in missing]
            retried_waits = self._waits(retried)
            again = await self._execute(sha, retried, retried_waits)
            for i, result in zip(missing, again):
                results[i] = result
            self._check_waits(retried, retried_waits, again[len(retried):])
        for result in results[: len(calls) + len(rejections)]:
            if isinstance(result, Exception):
                raise result
        self._check_waits(calls, waits, results[len(calls) + len(rejections):])
        flags: dict[int, list[int]] = {}
        for (shard, _, _), result in zip(calls, results):
            flags.setdefault(shard, []).extend(result)  # the script's integers: 1 stored, 0 not
        return flags

    async def _execute(
        self, sha: str, calls: list[tuple[int, int, list[Any]]],
        waits: list[tuple[tuple[Any, ...], Any]], rejections: list[Rejection] | tuple[()] = (),
    ) -> list[Any]:
        """Send the appends, the rejections' dead-letter copies, then the durability waits, in
        one round trip; every reply in order, an error reply as its exception (there are waits
        only without the pipelined connection)."""
        commands = self._commands(sha, calls, rejections)
        if self.link is not None:
            return await self.link.call_many(commands)
        async with self.redis.pipeline(transaction=False) as pipe:
            for command in commands:
                # execute_command: the cluster pipeline refuses its evalsha method
                pipe.execute_command(*command)
            for command, node in waits:
                if node is None:
                    pipe.execute_command(*command)
                else:
                    pipe.execute_command(*command, target_nodes=node)
            return await pipe.execute(raise_on_error=False)

    def _commands(self, sha: str, calls: list[tuple[int, int, list[Any]]],
                  rejections: list[Rejection] | tuple[()]) -> list[tuple[Any, ...]]:
        commands: list[tuple[Any, ...]] = [("EVALSHA", sha, numkeys, *args) for _, numkeys, args in calls]
        for rej in rejections:  # XADD dead-letter MAXLEN ~ n * r <json>
            commands.append(("XADD", keyspace.DEAD_LETTER, "MAXLEN", "~", self.settings.deadletter_maxlen,
                             "*", keyspace.ENTRY_REASON, msgspec.json.encode(rej)))
        return commands

    def _waits(self, calls: list[tuple[int, int, list[Any]]]) -> list[tuple[tuple[Any, ...], Any]]:
        """The WAIT / WAITAOF commands after these appends: once on a single node, once per
        primary written on a cluster (with that node)."""
        if self.durable == "0" or not calls:
            return []
        timeout = max(0, self.settings.analytics_wait_timeout_ms)
        commands: list[tuple[Any, ...]] = []
        if self.wait_replicas:
            commands.append(("WAIT", self.wait_replicas, timeout))
        if self.wait_aof:
            commands.append(("WAITAOF", 1, 0, timeout))
        if not self.cluster:
            return [(c, None) for c in commands]
        nodes: dict[str, Any] = {}
        for shard, _, _ in calls:
            node = self.redis.get_node_from_key(keyspace.stream(shard))  # type: ignore[union-attr]
            nodes[node.name] = node
        return [(c, node) for node in nodes.values() for c in commands]

    def _check_waits(self, calls: list[tuple[int, int, list[Any]]],
                     waits: list[tuple[tuple[Any, ...], Any]], replies: list[Any]) -> None:
        for (command, node), reply in zip(waits, replies):
            if isinstance(reply, Exception):
                raise NotDurable(f"{command[0]} failed: {reply}")
            if command[0] == "WAIT" and int(reply) < self.wait_replicas:
                raise NotDurable(f"the events reached {int(reply)} of {self.wait_replicas} replicas "
                                 f"within {self.settings.analytics_wait_timeout_ms} ms")
            if command[0] == "WAITAOF" and int(reply[0]) < 1:
                raise NotDurable(f"the events were not fsynced within "
                                 f"{self.settings.analytics_wait_timeout_ms} ms")
        if self.cluster and waits:
            # a slot that moved meanwhile was written elsewhere than where WAIT ran: not proven
            owners = {self.redis.get_node_from_key(keyspace.stream(shard)).name  # type: ignore[union-attr]
                      for shard, _, _ in calls}
            if not owners <= {node.name for _, node in waits}:
                raise NotDurable("the cluster's slots moved during the write")
