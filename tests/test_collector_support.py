"""Helpers shared by the collector's tests (this module holds no tests of its own)."""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

import msgspec
import redis
from starlette.testclient import TestClient

from collector.app import create_app
from schemas import keyspace
from schemas.catalog import STORED_LIST_DECODER, StoredEvent
from schemas.settings import Settings
from tests.conftest import WRITE_KEY

HEADERS = {"X-Write-Key": WRITE_KEY, "Content-Type": "application/json"}
ROUTE = "/api/analytics/events"


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(timezone.utc)


def event(rng: random.Random, name: str = "village_active", **over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "event_name": name,
        "event_version": 1,
        "ts_utc": iso(now() - timedelta(seconds=rng.randrange(0, 600))),
        "anon_village_id": f"village-{rng.getrandbits(48):012x}",
        "app_version": "1.4.2",
        "platform": rng.choice(["ios", "android", "web"]),
    }
    if name in ("session_start", "session_end"):
        base["session_id"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if name == "dialogue_open":
        base["payload"] = {"dialogue_id": "intro_1"}
    if name == "command_executed":
        base["payload"] = {"command": "build.house", "success": True}
    base.update(over)
    return base


def batch(events: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    return {"batch_id": str(uuid.uuid4()), "sent_at": iso(now()), "events": events, **over}


@contextlib.contextmanager
def client(env: Mapping[str, str], **over: str) -> Iterator[TestClient]:
    settings = Settings.from_env({**env, **over})
    with TestClient(create_app(settings)) as c:
        yield c


def stored(r: redis.Redis, settings: Settings) -> list[tuple[int, StoredEvent]]:
    """Every event in every shard's stream, with its shard."""
    out = []
    for shard in range(settings.stream_shards):
        for _id, fields in r.xrange(keyspace.stream(shard)):
            out.extend((shard, e) for e in STORED_LIST_DECODER.decode(fields[keyspace.ENTRY_EVENTS_B]))
    return out


def dead_letters(r: redis.Redis) -> list[tuple[str, dict[str, Any]]]:
    return [
        (i.decode(), msgspec.json.decode(f[keyspace.ENTRY_REASON_B]))
        for i, f in r.xrange(keyspace.DEAD_LETTER)
    ]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus exposition (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    key = f"{name}{{{want}}}" if want else name
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return 0.0
