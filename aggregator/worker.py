"""The worker loop: read the shard streams with a consumer group, apply each entry exactly once.

On start a worker first re-reads its own pending entries (ID ``0``), then new ones (``>``); it
periodically XAUTOCLAIMs entries that a dead consumer left pending. An entry that cannot be
decoded, or that was delivered more than ``max_deliveries`` times, goes to the dead-letter stream.
The first SIGTERM/SIGINT stops reading after the batch in hand; the second exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any

import msgspec
import redis

from aggregator.effects import build
from schemas import keyspace
from schemas.catalog import STORED_LIST_DECODER
from schemas.settings import Settings
from schemas.sketch import LOG_GAMMA

log = logging.getLogger("aggregator")
APPLY_LUA = Path(__file__).with_name("apply.lua").read_text()
HEARTBEAT_TTL_S = 30


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
    ) -> None:
        self.redis = client
        self.settings = settings
        self.consumer = consumer or default_consumer_name()
        self.shards = shards if shards is not None else list(range(settings.stream_shards))
        self.apply = client.register_script(APPLY_LUA)
        self.stopping = False
        self._signals = 0
        self._last_claim = 0.0
        self.applied = 0
        self.late = 0
        self.dead = 0

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
        """Process until stopped; with ``burst`` return once nothing is pending or new."""
        ensure_groups(self.redis, self.settings)
        self._drain_own_pending()
        backoff = 0.1
        while not self.stopping:
            try:
                self.heartbeat()
                handled = self.claim_idle() if self._claim_due() else 0
                handled += self.read_new(block=not burst)
                backoff = 0.1
                if burst and handled == 0:
                    return
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                log.warning("redis unavailable (%s); retrying in %.1fs", exc.__class__.__name__, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 10.0)

    def heartbeat(self) -> None:
        self.redis.set(keyspace.heartbeat(self.consumer), int(time.time() * 1000), ex=HEARTBEAT_TTL_S)

    # -- reading ----------------------------------------------------------------------------
    def _drain_own_pending(self) -> None:
        streams = {keyspace.stream(s): "0" for s in self.shards}
        while streams and not self.stopping:
            reply = self.redis.xreadgroup(
                self.settings.consumer_group, self.consumer, streams, count=self.settings.read_count
            )
            progressed = {}
            for name, entries in reply or []:
                if entries:
                    self.process(name.decode(), entries)
                    progressed[name.decode()] = entries[-1][0].decode()
            streams = progressed

    def read_new(self, block: bool = True) -> int:
        streams = {keyspace.stream(s): ">" for s in self.shards}
        reply = self.redis.xreadgroup(
            self.settings.consumer_group,
            self.consumer,
            streams,
            count=self.settings.read_count,
            block=self.settings.block_ms if block else None,
        )
        handled = 0
        for name, entries in reply or []:
            handled += self.process(name.decode(), entries)
        return handled

    def _claim_due(self) -> bool:
        return time.monotonic() - self._last_claim > self.settings.claim_idle_ms / 4000

    def claim_idle(self) -> int:
        """Take over entries idle longer than ``claim_idle_ms`` (their consumer died)."""
        self._last_claim = time.monotonic()
        handled = 0
        for shard in self.shards:
            name = keyspace.stream(shard)
            start = "0-0"
            while True:
                nxt, entries, *_ = self.redis.xautoclaim(
                    name, self.settings.consumer_group, self.consumer,
                    min_idle_time=self.settings.claim_idle_ms, start_id=start,
                    count=self.settings.read_count,
                )
                entries = [e for e in entries if e and e[1] is not None]
                if entries:
                    handled += self.process(name, entries, claimed=True)
                start = nxt.decode() if isinstance(nxt, bytes) else nxt
                if start == "0-0":
                    break
        return handled

    # -- applying ---------------------------------------------------------------------------
    def process(self, stream: str, entries: list[Any], claimed: bool = False) -> int:
        shard = _shard_of_stream(stream, self.shards)
        now = int(time.time() * 1000)
        s = self.settings
        too_many = self._over_delivered(stream, entries) if claimed else set()
        pipe = self.redis.pipeline(transaction=False)
        calls = 0
        for entry_id, fields in entries:
            eid = entry_id.decode()
            if eid in too_many:
                self._dead_letter(pipe, stream, eid, fields, "delivered too many times")
                continue
            try:
                body = fields[b"e"]
                events = STORED_LIST_DECODER.decode(body)
            except (KeyError, msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._dead_letter(pipe, stream, eid, fields, f"undecodable entry: {exc}")
                continue
            late_events = [e for e in events if e.ts < now - s.late_window_ms]
            late_body = msgspec.msgpack.encode(late_events) if late_events else None
            fx = build(shard, events, now, s.late_window_ms, late_body)
            self.apply(
                keys=fx.keys,
                args=[
                    s.consumer_group, eid, s.metrics_retention_days * 86400,
                    (s.late_window_hours + s.max_session_hours) * 3600, repr(LOG_GAMMA), *fx.ops,
                ],
                client=pipe,
            )
            self.applied += fx.applied
            self.late += fx.late
            calls += 1
        for result in pipe.execute(raise_on_error=False):
            if isinstance(result, Exception):
                # the entry stays pending: it is retried, then dead-lettered past max_deliveries
                log.error("applying an entry of %s failed: %s", stream, result)
        return len(entries)

    def _over_delivered(self, stream: str, entries: list[Any]) -> set[str]:
        ids = [e[0] for e in entries]
        if not ids:
            return set()
        pending = self.redis.xpending_range(
            stream, self.settings.consumer_group, min=ids[0], max=ids[-1], count=len(ids) * 2
        )
        return {
            p["message_id"].decode()
            for p in pending
            if p["times_delivered"] > self.settings.max_deliveries
        }

    def _dead_letter(self, pipe: Any, stream: str, eid: str, fields: Any, reason: str) -> None:
        self.dead += 1
        log.error("dead-lettering %s %s: %s", stream, eid, reason)
        record = {"stream": stream, "entry_id": eid, "reason": reason, "at": int(time.time() * 1000)}
        body = fields.get(b"e", b"") if isinstance(fields, dict) else b""
        pipe.xadd(keyspace.DEAD_LETTER, {"r": msgspec.json.encode(record), "e": body})
        pipe.xack(stream, self.settings.consumer_group, eid)


def _shard_of_stream(stream: str, shards: list[int]) -> int:
    for shard in shards:
        if keyspace.stream(shard) == stream:
            return shard
    raise ValueError(f"stream {stream} is not one of this worker's shards")


def pending_total(client: redis.Redis, settings: Settings) -> int:
    """Entries not yet applied across all shards: undelivered lag plus pending.

    A stream whose group does not exist yet counts all its entries as not applied.
    """
    total = 0
    for shard in range(settings.stream_shards):
        name = keyspace.stream(shard)
        try:
            groups = client.xinfo_groups(name)
        except redis.ResponseError:  # no such stream: nothing was ever written
            continue
        group = next((g for g in groups if g["name"].decode() == settings.consumer_group), None)
        if group is None:
            total += client.xlen(name)
            continue
        lag = group.get("lag")
        if lag is None:  # unknown after trims: compare the last delivered id with the last id
            last = client.xinfo_stream(name)["last-generated-id"]
            lag = 0 if group["last-delivered-id"] == last else 1
        total += int(lag) + int(group["pending"])
    return total
