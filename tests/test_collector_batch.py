"""The collector's batch path against its per-event path: same stored bytes, same rejections.

``Validator.run`` takes a batch whose events are all valid as sent through one decode of the
whole array (``Validator._batch``); anything else goes event by event. Mutated batches (bad
patterns, missing or null fields, unknown events, oversized events, future times, skew, imports,
sessions ending near a salt rotation) must come out byte for byte as the per-event path makes
them. No server: salts are fixed per epoch.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from collector.privacy import Pseudonymizer
from collector.validate import Outcome, Validator
from schemas.catalog import STORED_LIST_DECODER, Batch, StoredEvent, compact
from schemas.settings import Settings
from scripts.simulate import generate

MUTATIONS = [
    lambda e: e.__setitem__("platform", "IOS"),
    lambda e: e.__setitem__("platform", "ios\n"),
    lambda e: e.__setitem__("app_version", "1.4.2 beta"),
    lambda e: e.__setitem__("app_version", None),
    lambda e: e.pop("ts_utc", None),
    lambda e: e.__setitem__("client_ts", "2025-01-01T00:00:00.123456+02:00"),
    lambda e: e.__setitem__("client_ts", None),
    lambda e: e.__setitem__("event_id", e["event_id"].upper()),
    lambda e: e.__setitem__("event_id", e["event_id"].replace("-", "")),
    lambda e: e.__setitem__("event_version", 2),
    lambda e: e.__setitem__("event_name", "no_such_event"),
    lambda e: e.__setitem__("extra", "x" * 3000),
    lambda e: e.__setitem__("payload", {"dialogue_id": "bad id!"}),
    lambda e: e.__setitem__("payload", {"command": "ok", "success": "yes"}),
    lambda e: e.__setitem__("payload", {"kind": "daily", "junk": 1}),
    lambda e: e.pop("payload", None),
    lambda e: e.__setitem__("payload", None),
    lambda e: e.__setitem__("session_id", None),
    lambda e: e.__setitem__("ts_utc", "2025-09-14T10:00:00.5+05:30"),
    lambda e: e.__setitem__("ts_utc", "9999-12-31T23:59:59Z"),
    lambda e: e.__setitem__("anon_village_id", ""),
    lambda e: e.__setitem__("payload", {"reason": "timeout", "duration_ms": 5}),
    lambda e: e.__setitem__("user_id", "user-123"),
    lambda e: e.__setitem__("anonymous_id", "anon-12345"),
    lambda e: e.__setitem__("anonymous_id", ""),
]
CLIENTS = [None, None, {"ip": "203.0.113.0", "browser": "Firefox", "os": "Linux", "device_type": "desktop"}]


def _validators(settings: Settings) -> tuple[Validator, Validator]:
    pseudo = Pseudonymizer(None, settings)  # type: ignore[arg-type]

    async def fixed_salt(epoch: int, now_ms: int) -> bytes:
        return bytes([epoch % 256]) * 32

    pseudo.salt = fixed_salt  # type: ignore[method-assign]
    batch, per_event = Validator(settings, pseudo), Validator(settings, pseudo)

    async def never(*_: Any) -> None:
        return None

    per_event._batch = never  # type: ignore[method-assign]
    return batch, per_event


def _view(out: Outcome) -> tuple[Any, Any]:
    return out.by_shard, out.late, [msgspec.to_builtins(r) for r in out.rejections]


def _runs(events: list[dict[str, Any]], rng: random.Random, n: int, longest: int) -> Iterator[list[dict[str, Any]]]:
    """``n`` batches, each a copy of 1 to ``longest`` consecutive events."""
    for _ in range(n):
        k = rng.randint(1, longest)
        start = rng.randrange(len(events) - k)
        yield [dict(e) for e in events[start : start + k]]


async def _same(fast: Validator, slow: Validator, raw: list[msgspec.Raw], received: int, skew: int,
                historical: bool, client: dict[str, str] | None = None) -> bool:
    """Assert both validators give this batch the same outcome; whether the batch path took it."""
    taken = await fast._batch(raw, received, skew, historical, client) is not None
    got = await fast.run(raw, received, skew, historical, client)
    want = await slow.run(raw, received, skew, historical, client)
    assert _view(got) == _view(want), raw
    return taken


def test_batch_path_matches_per_event_path(rng: random.Random) -> None:
    # one-day salt epochs and a 12 h grace, so session ends near a rotation carry an alias
    settings = Settings.from_env({"SALT_ROTATION_DAYS": "1", "MAX_SESSION_HOURS": "12"})
    fast, slow = _validators(settings)
    now = 1_763_900_000_000
    events = generate(40, 80, now - 6 * 3_600_000, now + 3_600_000, rng.randrange(1 << 30))
    taken = 0

    async def main() -> None:
        nonlocal taken
        for batch in _runs(events, rng, 600, 30):
            if rng.random() < 0.5:
                for _ in range(rng.randint(1, 2)):
                    rng.choice(MUTATIONS)(rng.choice(batch))
            raw = msgspec.json.decode(msgspec.json.encode({"events": batch}), type=Batch).events
            skew = rng.choice([0, 0, 12_345, -99_999])
            historical = rng.random() < 0.2
            received = now + rng.randint(-100, 100)
            client = rng.choice(CLIENTS)
            taken += await _same(fast, slow, raw, received, skew, historical, client)

    asyncio.run(main())
    assert taken > 100  # the batch path was exercised, not only the fallback


def test_compact_form_reads_back_as_the_full_form() -> None:
    base = dict(name="dialogue_open", version=1, received=1_700_000_000_500, village="v" * 24,
                app_version="1.4.2", platform="ios", payload={"dialogue_id": "elder"})
    cases = [
        StoredEvent(event_id=uuid.uuid4().hex, ts=1_700_000_000_000, ts_original=1_700_000_000_000,
                    client_ts=1_700_000_000_000, **base),
        StoredEvent(event_id=uuid.uuid4().hex, ts=1_700_000_000_000, ts_original=1_699_999_000_000,
                    client_ts=1_699_999_000_001, session="s" * 24, historical=True, **base),
        StoredEvent(event_id="not-hex", ts=5, ts_original=5, **base),
        StoredEvent(event_id="AB" * 16, ts=5, ts_original=5, client_ts=None, **base),
        StoredEvent(event_id=uuid.uuid4().hex, ts=5, ts_original=5, user="u" * 24, **base),
        StoredEvent(event_id=uuid.uuid4().hex, ts=5, ts_original=5, anonymous="a" * 24, historical=True,
                    client={"ip": "10.1.2.0", "browser": "Chrome", "os": "Android", "device_type": "mobile"},
                    **base),
    ]
    compact_bytes = msgspec.msgpack.encode([compact(e) for e in cases])
    full_bytes = msgspec.msgpack.encode(cases)
    assert STORED_LIST_DECODER.decode(compact_bytes) == cases
    assert STORED_LIST_DECODER.decode(full_bytes) == cases
    assert len(compact_bytes) < len(full_bytes)


def test_batch_path_salts_an_event_of_epoch_minus_one() -> None:
    """A time before 1970 (a reset device clock: 1970-01-01T00:00:00+02:00) is salt epoch -1,
    which the loop once took for its "no epoch yet" mark: the empty salt, a pseudonym anyone can
    recompute."""
    settings = Settings.from_env({"SALT_ROTATION_DAYS": "1"})
    fast, slow = _validators(settings)
    now = 1_763_900_000_000
    event = dict(generate(1, 1, now - 3_600_000, now, 7)[0])
    event["ts_utc"] = "1970-01-01T00:00:00+02:00"  # 1969-12-31T22:00Z: salt epoch -1
    event.pop("client_ts", None)
    raw = msgspec.json.decode(msgspec.json.encode({"events": [event]}), type=Batch).events

    async def main() -> None:
        assert await fast._batch(raw, now, 0, False, None) is not None  # the batch path takes it
        got, want = await fast.run(raw, now, 0), await slow.run(raw, now, 0)
        assert got.by_shard == want.by_shard  # same pseudonyms: the salt of epoch -1, not b""

    asyncio.run(main())


@pytest.mark.parametrize("profile", ["seed000", "seed001", "seed002", "seed003", "seed004"])
def test_batch_path_matches_per_event_path_under_every_profile(profile: str) -> None:
    """The test above runs the default catalog only: none of its payloads has a
    hashed or coarsened field, so the loop's to_builtins + _treat mode is compared here."""
    from schemas import profiles
    from scripts.seed_traffic import profile_events

    settings = Settings.from_env({"SALT_ROTATION_DAYS": "1", "MAX_SESSION_HOURS": "12",
                                  "ANALYTICS_PROFILE": profile})
    fast, slow = _validators(settings)
    now = 1_763_900_000_000
    events = profile_events(profiles.load(profile), actors=30, count=400, start_ms=now - 30 * 3_600_000,
                            end_ms=now, seed=5)
    rng = random.Random(5)
    taken = 0

    async def main() -> None:
        nonlocal taken
        for batch in _runs(events, rng, 150, 20):
            raw = msgspec.json.decode(msgspec.json.encode({"events": batch}), type=Batch).events
            skew, historical = rng.choice([0, 12_345]), rng.random() < 0.2
            taken += await _same(fast, slow, raw, now, skew, historical)

    asyncio.run(main())
    assert taken > 50, taken
