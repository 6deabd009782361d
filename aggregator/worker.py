"""The worker loop: read the shard streams with a consumer group, apply each entry exactly once.

Every worker reads every shard: the consumer group hands each entry to one consumer, so workers
share the shards by asking for work, and adding or removing one needs no coordination (a
removed one's leftovers are claimed). On start a worker first re-reads its own pending entries
(ID ``0``), then new ones (``>``); it periodically XAUTOCLAIMs entries that a dead consumer left
pending. An entry whose own decode or apply failed more than ``max_deliveries`` times (counted in
the shard's ``keyspace.failures`` hash; a worker's crash is not the entry's failure) goes to the
shard's dead-letter stream with the reason; until then it stays pending and is retried.
The safety net for an entry that kills the worker itself (OOM, segfault, hard exit: no failure is
ever counted): one the stream delivered more than ``max_claims`` times is dead-lettered unread.
Redelivered entries already delivered ``_SUSPECT`` times go one at a time, each claimed again just
before it is applied, so that such crashes count against the entry in hand, not its batch-mates.
The first SIGTERM/SIGINT stops reading after the batch in hand; the second exits at once.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import redis

from aggregator import maintenance, metrics, purge
from aggregator.archive import open_archive
from aggregator.backlog import pending_total
from aggregator.effects import ENTRY_DECODER, Plan
from kinds import rollups
from schemas import adjusted, keyspace, profiles
from schemas.keyspace import ENTRY_APPLIED_B, ENTRY_EVENTS_B
from infra.connection import RETRYABLE, is_cluster, node_client, refresh
from schemas.days import day_of_number
from schemas.settings import Settings
from schemas.sketch import LOG_GAMMA

__all__ = ["Worker", "default_consumer_name", "ensure_groups", "pending_total"]

log = logging.getLogger("aggregator")
APPLY_LUA = Path(__file__).with_name("apply.lua").read_text()
DEAD_LETTER_LUA = Path(__file__).with_name("deadletter.lua").read_text()
# connection errors and what a cluster failover or resharding answers: retried, never dead-lettered
_CONNECTION_ERRORS = RETRYABLE + (redis.exceptions.RedisClusterException,)


class _Redirected(redis.ConnectionError):
    """A shard's script was answered MOVED/ASK/CLUSTERDOWN: its entries stay pending, the slot
    map is re-read and the worker re-reads its own pending entries."""


def _redirected(result: Any) -> bool:
    return isinstance(result, (redis.exceptions.AskError, redis.exceptions.ClusterDownError,
                               redis.exceptions.TryAgainError, redis.exceptions.ReadOnlyError)) or (
        isinstance(result, redis.ResponseError) and str(result).startswith(("MOVED", "ASK", "CLUSTERDOWN"))
    )


def _eid(entry_id: Any) -> str:
    return entry_id.decode() if isinstance(entry_id, bytes) else entry_id


def _stream_order(eid: str) -> tuple[int, int]:
    ms, _, seq = eid.partition("-")
    return int(ms), int(seq or 0)


def _entries(raw: Any) -> list[tuple[Any, dict[bytes, bytes]]]:
    """A raw one-stream XREADGROUP reply's entries, as redis-py parses them."""
    if not raw:
        return []
    out = []
    items = next(iter(raw.values())) if isinstance(raw, dict) else raw[0][1]  # RESP3: a map
    for entry_id, kv in items:
        out.append((entry_id, dict(zip(kv[::2], kv[1::2])) if kv else {}))
    return out
OPS_ENCODER = msgspec.msgpack.Encoder()
# a redelivered entry delivered this often (in hand when a worker died, or failed, twice) is
# applied on its own, not in a merged batch (see ``_process_redelivered``)
_SUSPECT = 3
# of redelivered entries of one shard: own failures so far (of those that failed), deliveries
_Counts = tuple[dict[str, int], dict[str, int]]
# entry id, fields, applied, late: the decoded events are not kept (a read's would all be in memory
# at once); the rare entry-by-entry retry decodes them again
Good = tuple[str, Any, int, int]


def _read(conn: Any) -> Any:
    """One reply; an error reply is returned, not raised."""
    try:
        return conn.read_response()
    except redis.ResponseError as exc:
        return exc


class _Commands:
    """Commands queued for one shard, sent in one write; scripts call it like a pipeline."""

    def __init__(self) -> None:
        self.stack: list[tuple[Any, ...]] = []

    def xack(self, name: str, group: str, *ids: str) -> None:
        self.stack.append(("XACK", name, group, *ids))

    def evalsha(self, sha: str, numkeys: int, *args: Any) -> None:
        self.stack.append(("EVALSHA", sha, numkeys, *args))

    def eval(self, script: str, numkeys: int, *args: Any) -> None:
        self.stack.append(("EVAL", script, numkeys, *args))

    def hincrby(self, name: str, key: str, amount: int = 1) -> None:
        self.stack.append(("HINCRBY", name, key, amount))

    def expire(self, name: str, seconds: int) -> None:
        self.stack.append(("EXPIRE", name, seconds))


class _Prepared:
    """One shard's part of a read: its commands, what each reply means, its merged entries."""

    def __init__(self, stream: str, shard: int, entries: list[Any]) -> None:
        self.stream = stream
        self.shard = shard
        self.entries = entries
        self.commands = _Commands()
        self.rows: list[tuple[str, str, int, int]] = []  # (kind, entry id, events applied, late)
        self.good: list[Good] = []  # entries in the merged plan
        self.failed: dict[str, int] = {}  # entry id -> its own failures so far (redelivered ones)
        self.delivered: dict[str, int] = {}  # entry id -> the stream's deliveries (redelivered ones)
        self.still_failing: set[str] = set()  # entries whose failure was counted this time
        self.merged = False
        self.sent = 0  # commands sent
        self.results: list[Any] = []


def default_consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def ensure_groups(client: redis.Redis, settings: Settings) -> None:
    for shard in range(settings.stream_shards):
        try:
            client.xgroup_create(keyspace.stream(shard), settings.consumer_group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise


class Worker:
    def __init__(
        self,
        client: redis.Redis,
        settings: Settings,
        consumer: str | None = None,
        shards: list[int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = client
        self.cluster = is_cluster(client)
        self.settings = settings
        self.base_settings = settings  # before an admin's run-time changes (schemas/adjusted.py)
        self._followed_at = float("-inf")
        self.archive = open_archive(settings.archive_url)
        self.consumer = consumer or default_consumer_name()
        self.shards = shards if shards is not None else list(range(settings.stream_shards))
        self._shard_of = {keyspace.stream(s): s for s in self.shards}
        self.apply = client.register_script(APPLY_LUA)
        self.kpis = profiles.load(settings.analytics_profile).kpis
        self._ttl = settings.metrics_retention_days * 86400
        self._stale_rollups: set[str] = set()
        self._session_ttl = (settings.late_window_hours + settings.max_session_hours) * 3600
        self._log_gamma = repr(LOG_GAMMA)
        self.dead_letter = client.register_script(DEAD_LETTER_LUA)
        self._scripts_loaded = False
        self.clock = clock
        self.stopping = False
        self._signals = 0
        self._last_claim = 0.0
        self._last_heartbeat = 0.0
        self._last_maintenance = time.monotonic()
        self._failures_ttl = max(1, settings.analytics_retention_days) * 86400
        self._retry_own = False  # an entry failed and stays pending to this consumer
        # this process's tallies (the metrics counters hold the same, labelled by shard)
        self.processed = self.applied = self.late = self.dead = self.skipped = self.trimmed = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: Any) -> None:
            self._signals += 1
            if self._signals > 1:
                log.warning("second signal: exiting now")
                os._exit(1)
            log.info("signal %s: finishing the batch in hand", signum)
            self.stopping = True

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self, burst: bool = False) -> None:
        """Process until stopped; with ``burst`` return once nothing is pending or new.

        Redis going away is survived with capped, jittered exponential backoff; after a reconnect
        the groups are re-created if the server lost them and the worker's own pending entries
        are re-read first, exactly as on a fresh start.
        """
        ready = False
        backoff = 0.1
        while not self.stopping:
            try:
                if not ready:
                    self._scripts_loaded = False  # a restarted server has none
                    ensure_groups(self.redis, self.settings)
                    self.heartbeat()
                    self._drain_own_pending()
                    ready = True
                    continue
                self.heartbeat(force=False)
                self.follow_settings()
                self._maintain_if_due()
                handled = self.claim_idle() if self._claim_due() else 0
                if not self.stopping:
                    handled += self.read_new(block=not burst)
                backoff = 0.1
                if burst and self._retry_own:
                    # a burst cannot wait for CLAIM_IDLE_MS: retry the failed entries now, until
                    # they apply or pass MAX_DELIVERIES
                    self._retry_own = False
                    self._drain_own_pending()
                    continue
                if burst and handled == 0:
                    break
            except _CONNECTION_ERRORS as exc:
                ready = False
                refresh(self.redis)  # a failover or resharding: re-read the slot map
                log.warning("redis unavailable (%s); retrying in %.1fs", exc.__class__.__name__, backoff)
                self._pause(backoff * random.uniform(0.5, 1.0))
                backoff = min(backoff * 2, float(self.settings.reconnect_max_seconds))
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                log.warning("consumer group missing (server restarted empty?); re-creating it")
                ready = False
        self._clear_heartbeat()

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.stopping and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def heartbeat(self, force: bool = True) -> None:
        """Refresh the liveness key; in the loop at most three times per TTL."""
        ttl = self.settings.heartbeat_ttl_seconds
        if not force and time.monotonic() - self._last_heartbeat < ttl / 3:
            return
        value = msgspec.json.encode(
            {"at": int(self.clock() * 1000), "pid": os.getpid(), "host": socket.gethostname()}
        )
        self.redis.set(keyspace.heartbeat(self.consumer), value, ex=ttl)
        self._last_heartbeat = time.monotonic()

    def _clear_heartbeat(self) -> None:
        try:
            self.redis.delete(keyspace.heartbeat(self.consumer))
        except _CONNECTION_ERRORS:
            pass  # it expires by itself

    def follow_settings(self, force: bool = False) -> None:
        """Overlay the admin's run-time settings (retention), re-read every ``REFRESH_S``."""
        if not force and time.monotonic() < self._followed_at + adjusted.REFRESH_S:
            return
        self._followed_at = time.monotonic()
        overrides = adjusted.parse(self.redis.hgetall(keyspace.ADJUSTED_SETTINGS))
        settings = adjusted.overlay(self.base_settings, overrides)
        if settings != self.settings:
            log.info("following run-time settings %s", overrides)
            self.settings = settings
            self._ttl = settings.metrics_retention_days * 86400

    def _maintain_if_due(self) -> None:
        if time.monotonic() - self._last_maintenance < self.settings.maintenance_seconds:
            return
        self._last_maintenance = time.monotonic()
        # events leave the streams through the archive (purge.trim); without one, XTRIM drops them
        if self.archive is None:
            maintenance.trim(self.redis, self.settings, int(self.clock() * 1000))
        else:
            archived = purge.trim(self.redis, self.settings, self.archive, int(self.clock() * 1000))
            if archived:
                log.info("archived and removed %d events past the retention period", archived)
        pruned = maintenance.prune_consumers(self.redis, self.settings)
        if pruned:
            log.info("pruned %d silent consumers with nothing pending", pruned)

    # -- reading ----------------------------------------------------------------------------
    def _drain_own_pending(self) -> None:
        """Finish what this consumer name was given before a crash or restart."""
        streams = {keyspace.stream(s): "0" for s in self.shards}
        while streams and not self.stopping:
            self.heartbeat(force=False)
            reply = self._read(streams, block=None)
            progressed = {}
            batches = []
            for raw_name, entries in reply or []:
                if entries:
                    name = raw_name.decode()
                    batches.append((name, entries))
                    progressed[name] = entries[-1][0].decode()
            self.process_many(batches, redelivered=True)
            streams = progressed

    def read_new(self, block: bool = True) -> int:
        streams = {keyspace.stream(s): ">" for s in self.shards}
        reply = self._read(streams, block=None if self.cluster or not block else self.settings.block_ms)
        if self.cluster and block and not any(entries for _, entries in reply or []):
            reply = self._read(streams, block=self.settings.block_ms)
        batches = [(name.decode(), entries) for name, entries in reply or [] if entries]
        if batches and len(batches[-1][1]) >= 8:
            # the server applies a shard while this process builds the next, but the last one is
            # waited for: split it so that only its last quarter is
            name, entries = batches.pop()
            cut = len(entries) * 3 // 4
            batches += [(name, entries[:cut]), (name, entries[cut:])]
        return self.process_many(batches)

    def _read(self, streams: dict[str, str], block: int | None) -> Any:
        """XREADGROUP of these streams: one command on a single node; on a cluster one per shard
        (a multi-stream read cannot span slots), each on its own connection to the shard's
        master, all sent before any reply is read, so that blocking reads wait side by side."""
        s = self.settings
        if not self.cluster:
            return self.redis.xreadgroup(s.consumer_group, self.consumer, streams,
                                         count=s.read_count, block=block)
        sent = []
        try:
            for name, start in streams.items():
                pool = node_client(self.redis, name).connection_pool
                conn = pool.get_connection()
                sent.append((name, pool, conn))
                args: list[Any] = ["XREADGROUP", "GROUP", s.consumer_group, self.consumer,
                                   "COUNT", s.read_count]
                if block is not None:
                    args += ["BLOCK", block]
                conn.send_command(*args, "STREAMS", name, start)
            reply = []
            for name, _, conn in sent:
                raw = conn.read_response()
                reply.append((name.encode(), _entries(raw)))
            return reply
        except BaseException:
            for _, _, conn in sent:
                conn.disconnect()
            raise
        finally:
            for _, pool, conn in sent:
                pool.release(conn)

    def _claim_due(self) -> bool:
        return time.monotonic() - self._last_claim > self.settings.claim_idle_ms / 4000

    def claim_idle(self) -> int:
        """Take over entries idle longer than ``claim_idle_ms`` (their consumer died or hung)."""
        self._last_claim = time.monotonic()
        handled = 0
        for shard in self.shards:
            name = keyspace.stream(shard)
            start = "0-0"
            while not self.stopping:
                reply = self.redis.xautoclaim(
                    name, self.settings.consumer_group, self.consumer,
                    min_idle_time=self.settings.claim_idle_ms, start_id=start,
                    count=self.settings.read_count,
                )
                nxt, entries = reply[0], reply[1]
                # Redis >= 7 drops entries trimmed away from the pending list itself and names them
                # in a third element; older replies carry them as entries without fields
                gone = len(reply[2]) if len(reply) > 2 else 0
                if gone:
                    self.trimmed += gone
                    metrics.TRIMMED.labels(str(shard)).inc(gone)
                if entries:
                    handled += self.process(name, entries, redelivered=True)
                start = nxt.decode() if isinstance(nxt, bytes) else nxt
                if start == "0-0":
                    break
        return handled

    # -- applying ---------------------------------------------------------------------------
    def process(self, stream: str, entries: list[Any], redelivered: bool = False) -> int:
        """Apply a batch of one shard's entries (see ``process_many``)."""
        return self.process_many([(stream, entries)], redelivered)

    def process_many(self, batches: list[tuple[str, list[Any]]], redelivered: bool = False) -> int:
        """Apply one read's batches, one per shard: each shard's merged effects in one atomic script.

        Each shard's script checks that every entry is still pending to this consumer, XACKs them
        all and applies the merged effects; if one is not (another consumer claimed it), it
        changes nothing and the entries are applied one script each, each XACKed first and skipped
        when it was no longer pending. Trimmed and dead-lettered entries ride along.
        A shard's commands are sent as soon as they are built, and the replies read after the
        last shard's: the server applies one shard while this process builds the next.
        ``redelivered`` entries (own pending, claimed) have their failure and delivery counts
        checked first (``_process_redelivered``).

        The cyclic GC is off meanwhile: a batch allocates ~10^5 short-lived, acyclic objects (the
        decoded events, the plans) that reference counting frees, and generational passes over
        them cost as much as decoding them (measured); it runs again between batches.
        """
        started = time.perf_counter()
        enabled = gc.isenabled()
        gc.disable()
        try:
            if redelivered:
                handled = self._process_redelivered(batches)
            else:
                handled = self._process_many(batches, None)
        finally:
            if enabled:
                gc.enable()
            self._drop_stale_rollups()
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        return handled

    def _process_redelivered(self, batches: list[tuple[str, list[Any]]]) -> int:
        """Entries delivered before: their counts are read first. Those delivered ``_SUSPECT``
        times or more were in hand when a worker died (or failed) at least twice: if one of them
        kills the worker, the whole batch is redelivered with it, and counting those deliveries
        against all of them would dead-letter the innocent ones too. So they go one at a time,
        fewest deliveries first, each claimed again (XCLAIM: one more delivery of it alone) just
        before it is applied: a crash then counts twice against the entry in hand and once against
        the others, which go first next time; only the culprit climbs past ``max_claims``."""
        counts = {stream: self._counts_of(stream, entries) for stream, entries in batches}
        plain: list[tuple[str, list[Any]]] = []
        suspects: list[tuple[int, str, str, Any]] = []
        for stream, entries in batches:
            delivered = counts[stream][1]
            rest = []
            for entry in entries:
                n = delivered.get(_eid(entry[0]), 0)
                if n >= _SUSPECT:
                    suspects.append((n, _eid(entry[0]), stream, entry))
                else:
                    rest.append(entry)
            if rest:
                plain.append((stream, rest))
        handled = self._process_many(plain, counts) if plain else 0
        suspects.sort(key=lambda x: (x[0], _stream_order(x[1])))
        for n, eid, stream, entry in suspects:
            if self.stopping:
                break  # the rest stays pending to this consumer
            if n <= self.settings.max_claims:  # past it: filed unread (``_prepare``)
                claimed = self.redis.xclaim(stream, self.settings.consumer_group, self.consumer, 0, [eid])
                if not claimed:  # settled meanwhile (or trimmed): nothing left to do
                    continue
                entry = claimed[0]
                counts[stream][1][eid] = n + 1
            handled += self._process_many([(stream, [entry])], counts)
        return handled

    def _process_many(self, batches: list[tuple[str, list[Any]]], counts: dict[str, _Counts] | None) -> int:
        if not self._scripts_loaded:
            self.redis.script_load(APPLY_LUA)
            self.redis.script_load(DEAD_LETTER_LUA)
            self._scripts_loaded = True
        # one connection per master (the only one on a single node): each shard's script goes to
        # the node that owns its slot
        conns: dict[int, tuple[Any, Any]] = {}
        prepared: list[tuple[_Prepared, Any]] = []
        try:
            for stream, entries in batches:
                pool = node_client(self.redis, stream).connection_pool
                if id(pool) not in conns:
                    conns[id(pool)] = (pool, pool.get_connection())
                conn = conns[id(pool)][1]
                prep = self._prepare(stream, entries, None if counts is None else counts[stream])
                prep.sent = len(prep.commands.stack)
                if prep.sent:
                    conn.send_packed_command(conn.pack_commands(prep.commands.stack))
                    prep.commands.stack.clear()  # the ops are the server's now
                prepared.append((prep, conn))
            for prep, conn in prepared:
                prep.results = [_read(conn) for _ in range(prep.sent)]
        except BaseException:
            for _, conn in conns.values():
                conn.disconnect()  # replies may be left unread: never reuse it
            raise
        finally:
            for pool, conn in conns.values():
                pool.release(conn)
        moved = [prep for prep, _ in prepared if any(_redirected(r) for r in prep.results)]
        flushed = False
        handled = 0
        for prep, _ in prepared:
            if prep in moved:  # nothing of it ran where it went: its entries stay pending
                continue
            flushed |= any(isinstance(r, redis.exceptions.NoScriptError) for r in prep.results)
            self._settle(prep)
            handled += len(prep.entries)
        if moved:
            self._scripts_loaded = False  # a promoted replica may lack them
            raise _Redirected(f"{len(moved)} shard(s) moved or failing over; re-reading")
        if flushed:  # the server lost its scripts (restarted?): those entries stay pending
            self._scripts_loaded = False
            raise redis.ConnectionError("scripts missing on the server; re-reading own pending entries")
        return handled

    def _prepare(self, stream: str, entries: list[Any], counts: _Counts | None) -> _Prepared:
        shard = self._shard_of[stream]
        s = self.settings
        prep = _Prepared(stream, shard, entries)
        if counts is not None:  # redelivered: the counts of these entries (a read's may hold more)
            ids = {_eid(e[0]) for e in entries}
            failed, delivered = counts
            prep.failed = {eid: n for eid, n in failed.items() if eid in ids}
            prep.delivered = {eid: n for eid, n in delivered.items() if eid in ids}
        cmds = prep.commands
        rows = prep.rows
        good = prep.good
        plan = Plan(shard, s.late_window_ms, self.kpis)
        for entry_id, fields in entries:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            if not fields:  # trimmed or deleted while it was pending: nothing left to apply
                cmds.xack(stream, s.consumer_group, eid)
                rows.append(("trimmed", eid, 0, 0))
                continue
            if ENTRY_APPLIED_B in fields:  # an erasure's or purge's rewrite of an applied entry
                cmds.xack(stream, s.consumer_group, eid)
                rows.append(("rewritten", eid, 0, 0))
                continue
            n = prep.delivered.get(eid, 0)
            if n > s.max_claims:  # not decoded: that may be what kills the worker
                self._give_up(cmds, prep, eid, fields, f"delivered {n} times without being applied: "
                              f"it may crash the worker (MAX_CLAIMS={s.max_claims})", rows)
                continue
            try:
                events = ENTRY_DECODER.decode(fields[ENTRY_EVENTS_B])
                applied, late = plan.add(events)
            except Exception as exc:  # noqa: BLE001 - one entry's bad data must not stop the worker
                kind = "undecodable entry" if isinstance(exc, (KeyError, msgspec.MsgspecError)) else "cannot apply entry"
                self._failed(cmds, prep, eid, fields, f"{kind}: {exc!r}", rows)
                plan = self._replan(shard, good)  # the failed add may have left part of its effects
                continue
            good.append((eid, fields, applied, late))
        if len(good) == 1:
            self._apply_one(cmds, plan, good[0], rows, prep)
        elif good:
            prep.merged = self._call(cmds, plan, " ".join(g[0] for g in good), self.consumer) is None
        return prep

    def _settle(self, prep: _Prepared) -> None:
        """Count a shard's replies; entries a merged script did not apply go entry by entry."""
        label = str(prep.shard)
        good = prep.good
        results = prep.results
        retry = list(good) if len(good) > 1 else []
        if prep.merged:
            outcome = results.pop()
            if outcome == 1:
                retry = []
                self._count_applied(label, sum(g[2] for g in good), sum(g[3] for g in good))
            elif isinstance(outcome, Exception):
                log.warning("merged apply of %d entries of %s failed (%s); applying them one by one",
                            len(good), prep.stream, outcome)
                if isinstance(outcome, redis.exceptions.NoScriptError):
                    retry = []  # nothing ran: they stay pending and are re-read
        self._tally(prep.stream, label, prep.rows, results, prep)
        if retry:  # not all pending to us any more (or the merged plan failed): entry by entry
            pipe = node_client(self.redis, prep.stream).pipeline(transaction=False)  # the shard's master
            rows: list[tuple[str, str, int, int]] = []
            for g in retry:
                one = Plan(prep.shard, self.settings.late_window_ms, self.kpis)
                one.add(ENTRY_DECODER.decode(g[1][ENTRY_EVENTS_B]))
                self._apply_one(pipe, one, g, rows, prep)
            self._tally(prep.stream, label, rows, pipe.execute(raise_on_error=False) if rows else [],
                        prep)
        self._forget_failures(prep)
        self.processed += len(prep.entries)
        metrics.PROCESSED.labels(label).inc(len(prep.entries))

    def _replan(self, shard: int, good: list[Good]) -> Plan:
        plan = Plan(shard, self.settings.late_window_ms, self.kpis)
        for g in good:
            plan.add(ENTRY_DECODER.decode(g[1][ENTRY_EVENTS_B]))  # succeeded before, so it does again
        return plan

    def _apply_one(
        self, pipe: Any, plan: Plan, g: Good, rows: list[tuple[str, str, int, int]], prep: _Prepared
    ) -> None:
        eid, fields, applied, late = g
        error = self._call(pipe, plan, eid)
        if error is None:
            rows.append(("apply", eid, applied, late))
        else:
            self._failed(pipe, prep, eid, fields, f"cannot apply entry: {error}", rows)

    # -- an entry's own failures ------------------------------------------------------------
    def _counts_of(self, stream: str, entries: list[Any]) -> _Counts:
        """Of these redelivered entries: how often each failed before (for those that did), and
        how often the stream delivered it, this delivery included (XPENDING's times-delivered:
        every XREADGROUP and XCLAIM/XAUTOCLAIM of it, crashes and failures alike)."""
        ids = [_eid(e[0]) for e in entries]
        if not ids:
            return {}, {}
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(keyspace.failures(self._shard_of[stream]), ids)
        for eid in ids:
            pipe.xpending_range(stream, self.settings.consumer_group, eid, eid, 1)
        failures, *pending = pipe.execute()
        return (
            {eid: int(n) for eid, n in zip(ids, failures) if n is not None},
            {eid: int(p[0]["times_delivered"]) for eid, p in zip(ids, pending) if p},
        )

    def _give_up(
        self, pipe: Any, prep: _Prepared, eid: str, fields: Any, reason: str,
        rows: list[tuple[str, str, int, int]],
    ) -> None:
        """File the entry in its shard's dead-letter stream with the reason, atomically with its
        XACK (deadletter.lua); the one way an entry is given up on."""
        self._dead_letter(pipe, prep.shard, eid, fields, reason)
        rows.append(("dead", eid, 0, 0))

    def _failed(
        self, pipe: Any, prep: _Prepared, eid: str, fields: Any, reason: str,
        rows: list[tuple[str, str, int, int]],
    ) -> None:
        """One failure of the entry itself: dead-letter it past ``max_deliveries``, else count it
        and leave it pending, to be retried (claimed after CLAIM_IDLE_MS, or re-read in a burst)."""
        n = prep.failed.get(eid, 0) + 1
        limit = self.settings.max_deliveries
        if n > limit:
            self._give_up(pipe, prep, eid, fields, f"{reason} (failed {n} times, MAX_DELIVERIES={limit})", rows)
            return
        log.warning("entry %s of %s failed (%d of %d): %s", eid, prep.stream, n, limit + 1, reason)
        key = keyspace.failures(prep.shard)
        pipe.hincrby(key, eid, 1)
        pipe.expire(key, self._failures_ttl)
        rows += [("failed", eid, 0, 0), ("noop", eid, 0, 0)]

    def _script_failures(self, prep: _Prepared, failed: list[str]) -> None:
        """Apply scripts that errored for these entries (still pending): count them like a failed
        decode; NOSCRIPT is not among them (the server lost its scripts, not the entry's fault)."""
        by_id = {e[0].decode() if isinstance(e[0], bytes) else e[0]: e[1] for e in prep.entries}
        pipe = self.redis.pipeline(transaction=False)
        rows: list[tuple[str, str, int, int]] = []
        for eid in failed:
            self._failed(pipe, prep, eid, by_id.get(eid, {}), "apply script failed", rows)
        self._tally(prep.stream, str(prep.shard), rows, pipe.execute(raise_on_error=False), prep)

    def _forget_failures(self, prep: _Prepared) -> None:
        """Drop the failure counts of entries that have now been settled (applied or filed)."""
        settled = [eid for eid in prep.failed if eid not in prep.still_failing]
        if settled:
            self.redis.hdel(keyspace.failures(prep.shard), *settled)

    def _call(self, pipe: Any, plan: Plan, ids: str, consumer: str | None = None) -> str | None:
        """Queue ``plan``'s script for the entry id(s); the error when its ops cannot be encoded."""
        s = self.settings
        try:
            fx = plan.finish()
            blob = OPS_ENCODER.encode(fx.ops)
        except Exception as exc:  # noqa: BLE001 - e.g. a number msgpack cannot carry
            return repr(exc)
        self._note_closed_days(plan)
        args = [s.consumer_group, ids, self._ttl, self._session_ttl, self._log_gamma, blob,
                consumer or "", *fx.blobs]
        self.apply(keys=fx.keys, args=args, client=pipe)
        return None

    def _note_closed_days(self, plan: Plan) -> None:
        """Closed days this plan changes (historical imports): their rollups go stale, those of
        every kind (the days' counters, actors and KPIs' own keys) and of the session sketches."""
        last = rollups.last_closed_day_number(self.settings, int(time.time() * 1000))
        for dn in {*plan.days, *plan.sketches}:
            if dn <= last:  # only history reaches a closed day: no date built for the others
                self._stale_rollups.add(day_of_number(dn))

    def _drop_stale_rollups(self) -> None:
        """After the scripts ran: a read before this point may have rolled up the old sketch."""
        if self._stale_rollups:
            rollups.forget(self.redis, sorted(self._stale_rollups))
            self._stale_rollups.clear()

    def _count_applied(self, label: str, applied: int, late: int) -> None:
        self.applied += applied
        self.late += late
        metrics.APPLIED.labels(label).inc(applied)
        metrics.LATE.labels(label).inc(late)

    def _tally(
        self, stream: str, label: str, rows: list[tuple[str, str, int, int]], results: list[Any],
        prep: _Prepared | None = None,
    ) -> None:
        script_failed: list[str] = []
        for (kind, eid, applied, late), result in zip(rows, results):
            if isinstance(result, Exception):
                # the entry stays pending: it is retried, then dead-lettered past max_deliveries
                log.error("entry %s of %s failed: %s", eid, stream, result)
                metrics.ERRORS.labels(label).inc()
                if kind == "apply" and not isinstance(result, redis.exceptions.NoScriptError):
                    script_failed.append(eid)
            elif kind == "failed":
                metrics.ERRORS.labels(label).inc()
                self._retry_own = True
                if prep is not None:
                    prep.still_failing.add(eid)
            elif kind == "apply" and result == 1:
                self._count_applied(label, applied, late)
            elif kind == "apply":  # another consumer applied it first: XACK in the script said 0
                self.skipped += 1
                metrics.SKIPPED.labels(label).inc()
            elif kind == "dead" and result == 1:
                self.dead += 1
                metrics.DEAD_LETTERED.labels(label).inc()
            elif kind == "trimmed":
                self.trimmed += 1
                metrics.TRIMMED.labels(label).inc()
        if script_failed and prep is not None:
            self._script_failures(prep, script_failed)

    def _dead_letter(self, pipe: Any, shard: int, eid: str, fields: Any, reason: str) -> None:
        log.error("dead-lettering %s %s: %s", keyspace.stream(shard), eid, reason)
        record = {
            "stream": keyspace.stream(shard), "entry_id": eid, "reason": reason,
            "consumer": self.consumer, "at": int(self.clock() * 1000),
        }
        body = fields.get(ENTRY_EVENTS_B, b"") if isinstance(fields, dict) else b""
        self.dead_letter(
            keys=[keyspace.stream(shard), keyspace.worker_dead_letter(shard), keyspace.shard_stats(shard),
                  keyspace.failures(shard)],
            args=[self.settings.consumer_group, eid, msgspec.json.encode(record), body],
            client=pipe,
        )
