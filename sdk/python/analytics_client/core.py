"""What both clients share: events, batches on the wire, the bounded queue, retry decisions."""

from __future__ import annotations

import email.utils
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

VERSION = "0.1.0"
EVENTS_PATH = "/api/analytics/events"
MAX_RETRY_AFTER = 3600.0


def iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def parse_ms(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000


def sample_fraction(actor: str) -> float:
    """FNV-1a (32 bit) of the actor's UTF-8 bytes as a fraction in [0, 1): the browser SDK's number."""
    h = 0x811C9DC5
    for byte in actor.encode():
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    return h / 4294967296


def sampled(actor: str, rate: float) -> bool:
    if rate >= 1:
        return True
    if not rate > 0:
        return False
    return sample_fraction(actor) < rate


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt))."""
    return (rng or random).random() * min(cap, base * 2 ** min(attempt, 30))


def retry_after(header: str | None) -> float:
    """``Retry-After`` (seconds or an HTTP date) in seconds from now; 0 if absent or unreadable."""
    if not header:
        return 0.0
    try:
        secs = float(header)
    except ValueError:
        try:
            secs = email.utils.parsedate_to_datetime(header).timestamp() - time.time()
        except (TypeError, ValueError):
            return 0.0
    return min(max(secs, 0.0), MAX_RETRY_AFTER)


Outcome = Literal["done", "retry", "split", "drop"]


def classify(status: int, size: int) -> Outcome:
    """2xx: stored (204: refused by an opted-out collector, never resend). 408/425/429/5xx and
    401/403 (a key the operator may fix): retry. 413 of several events: split. Other 4xx: drop."""
    if 200 <= status < 300:
        return "done"
    if status == 413 and size > 1:
        return "split"
    if status >= 500 or status in (401, 403, 408, 425, 429):
        return "retry"
    return "drop"


@dataclass
class Config:
    endpoint: str
    write_key: str
    app_version: str = "0.0.0"
    platform: str = "server"
    flush_at: int = 25
    flush_interval: float = 5.0
    sample_rate: float = 1.0
    max_queue_size: int = 10_000
    retry_base: float = 1.0
    retry_max: float = 60.0
    timeout: float = 10.0
    enabled: bool = True

    @property
    def url(self) -> str:
        base = self.endpoint.rstrip("/")
        return base if base.endswith(EVENTS_PATH) else base + EVENTS_PATH

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "X-Write-Key": self.write_key,
                "User-Agent": f"analytics-client-python/{VERSION}"}


@dataclass
class Batch:
    batch_id: str
    events: list[dict[str, Any]]


@dataclass
class Stats:
    queued: int = 0
    sent: int = 0
    dropped: int = 0  # the bounded queue was full: oldest dropped
    rejected: int = 0  # the collector can never accept them (a 4xx other than 401/403/408/413/425/429)
    sampled_out: int = 0
    disabled: int = 0
    retries: int = 0
    requests: int = 0


@dataclass
class Core:
    """The state machine both clients drive; the caller holds the lock around it."""

    config: Config
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    batch: Batch | None = None  # the batch being sent (kept, with its ids, across retries)
    actor: str | None = None
    enabled: bool = True
    offset_ms: float = 0.0  # server clock minus ours, from X-Server-Time
    attempts: int = 0
    stats: Stats = field(default_factory=Stats)

    def __post_init__(self) -> None:
        self.enabled = self.config.enabled

    def add(self, event_name: str, payload: dict[str, Any] | None, *, actor: str | None,
            session_id: str | None, version: int, ts: float | None, event_id: str | None = None,
            app_version: str | None = None, platform: str | None = None) -> str | None:
        if not self.enabled:
            self.stats.disabled += 1
            return None
        who = actor or self.actor
        if not who:
            raise ValueError("no actor: call identify() or pass actor=")
        if not sampled(who, self.config.sample_rate):
            self.stats.sampled_out += 1
            return None
        ev = {"event_id": event_id or str(uuid.uuid4()), "event_name": event_name,
              "event_version": version, "t": time.time() * 1000 if ts is None else ts * 1000,
              "actor": who, "session_id": session_id, "payload": payload or {},
              "app_version": app_version or self.config.app_version,
              "platform": platform or self.config.platform}
        self.queue.append(ev)
        self.stats.queued += 1
        while len(self.queue) + (len(self.batch.events) if self.batch else 0) > self.config.max_queue_size:
            self.queue.popleft()
            self.stats.dropped += 1
        return str(ev["event_id"])

    def add_wire(self, event: dict[str, Any]) -> str | None:
        """A ready catalog event (wire form); keeps its event_id."""
        return self.add(event["event_name"], event.get("payload"), actor=event["anon_village_id"],
                        session_id=event.get("session_id"), version=int(event.get("event_version", 1)),
                        ts=parse_ms(event["ts_utc"]) / 1000, event_id=event.get("event_id"),
                        app_version=event.get("app_version"), platform=event.get("platform"))

    def next_batch(self) -> Batch | None:
        if self.batch is None and self.queue:
            n = min(self.config.flush_at, len(self.queue))
            self.batch = Batch(str(uuid.uuid4()), [self.queue.popleft() for _ in range(n)])
        return self.batch

    def body(self, batch: Batch) -> bytes:
        """The wire body with ``sent_at`` stamped now: every attempt gets its own."""
        import json

        off = self.offset_ms
        events = []
        for e in batch.events:
            w = {"event_id": e["event_id"], "event_name": e["event_name"],
                 "event_version": e["event_version"], "ts_utc": iso(e["t"] + off), "client_ts": iso(e["t"]),
                 "anon_village_id": e["actor"], "app_version": e["app_version"],
                 "platform": e["platform"], "payload": e["payload"]}
            if e["session_id"]:
                w["session_id"] = e["session_id"]
            events.append(w)
        return json.dumps({"batch_id": batch.batch_id, "sent_at": iso(time.time() * 1000 + off),
                           "events": events}, separators=(",", ":")).encode()

    def learn_clock(self, server_time: str | None, t0: float, t1: float) -> None:
        try:
            server = float(server_time or "")
        except ValueError:
            return
        if server > 0:
            self.offset_ms = server - (t0 + t1) * 500

    def answered(self, batch: Batch, status: int, retry_after_header: str | None) -> float:
        """Apply an answer; returns how long to wait before the next attempt (0: go on)."""
        outcome = classify(status, len(batch.events))
        if outcome == "done":
            self.stats.sent += len(batch.events)
            self.batch, self.attempts = None, 0
            return 0.0
        if outcome == "drop":
            self.stats.rejected += len(batch.events)
            self.batch = None
            return 0.0
        if outcome == "split":
            half = (len(batch.events) + 1) // 2
            self.batch = Batch(str(uuid.uuid4()), batch.events[:half])
            self.queue.extendleft(reversed(batch.events[half:]))
            return 0.0
        return self.failed(retry_after(retry_after_header))

    def failed(self, floor: float = 0.0) -> float:
        """A failed attempt (network error: unknown outcome, resent with the same ids)."""
        self.stats.retries += 1
        wait = max(backoff_delay(self.attempts, self.config.retry_base, self.config.retry_max), floor)
        self.attempts += 1
        return wait

    def opt_out(self) -> None:
        self.enabled = False
        self.queue.clear()
        self.batch = None

    def pending(self) -> int:
        return len(self.queue) + (len(self.batch.events) if self.batch else 0)
