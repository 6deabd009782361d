"""Differential fuzz of the compiled batch reader (``collector/native_batch.pyx``) at the byte level.

``tests/test_native_batch.py`` mutates events with targeted regexes; here valid batches are
mutated as raw bytes (flips, insertions, deletions, truncation) and with tokens at the edges of
what the reader parses (int64 limits, long strings, odd time and UUID spellings, deep nesting,
unicode), under several profiles and settings. Whenever ``Validator._native`` answers, its
outcome must equal the Python path's; ``rows`` must never raise or crash on any bytes at all.
"""

from __future__ import annotations

import asyncio
import random

import msgspec
import pytest

from schemas.settings import Settings
from scripts.simulate import generate
from tests.test_collector_batch import _validators, _view
from tests.test_native_batch import _raw

TOKENS = [
    b"9223372036854775807", b"-9223372036854775808", b"999999999999999999", b"-999999999999999999",
    b"1000000000000000000", b"604800000", b"604800001", b"-0", b"0", b"1e3", b"1.5", b"-", b"+1",
    b"true", b"false", b"null", b"{}", b"[]", b'""', b'"' + b"a" * 300 + b'"', b'"' + b"b" * 70000 + b'"',
    b'{"a":{"b":{"c":{"d":1}}}}', b'"\\u0041"', b'"\xc3\xa9"', b'"\xff"', b'"\x7f"', b'"a\\n"',
    b'"2025-09-14T10:00:00Z"', b'"2025-09-14T10:00:00.123456Z"', b'"9999-12-31T23:59:59-23:59"',
    b'"0001-01-01T00:00:00+23:59"', b'"2025-09-14T10:00:00+00:60"', b'"2025-09-14T10:00:00.Z"',
    b'"2025-13-01T00:00:00Z"', b'"2025-00-10T00:00:00Z"', b'"2000-02-29T00:00:00Z"',
    b'"1900-02-29T00:00:00Z"', b'"2025-09-14T10:00:00+05:30"', b'"2025-09-14T10:00:00Z\\n"',
    b'"00000000-0000-0000-0000-000000000000"', b'"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"',
    b'"0000000000000000000000000000000000000"', b'"00000000-0000-0000-0000-00000000000g"',
    b'"heartbeat"', b'"daily"', b'"daily\\n"', b'"quit"', b'"timeout"', b'"x"', b'"-"', b'"."',
    b'"' + b"v" * 128 + b'"', b'"' + b"v" * 129 + b'"', b'"' + b"t" * 64 + b'"', b'"' + b"t" * 65 + b'"',
    b" ", b"\n", b"\t", b",", b":", b"{", b"}", b'"', b"\\",
    b'"payload"', b'"session_id"', b'"user_id"', b'"client_ts"', b'"ts_utc"', b'"event_version"',
]


def _mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(6)
        i = rng.randrange(len(b) + 1)
        if op == 0 and i < len(b):
            b[i] = rng.randrange(256)
        elif op == 1:
            b[i:i] = bytes([rng.randrange(256)])
        elif op == 2 and i < len(b):
            del b[i : i + rng.randint(1, 4)]
        elif op == 3:
            b[i:i] = rng.choice(TOKENS)
        else:  # a value replaced by a token: after a ':' up to the next ',' or '}'
            colons = [j for j, c in enumerate(b) if c == 58]
            if colons:
                j = rng.choice(colons) + 1
                k = j
                while k < len(b) and b[k] not in b",}":
                    k += 1
                b[j:k] = rng.choice(TOKENS)
    return bytes(b)


SETTINGS = [
    {"SALT_ROTATION_DAYS": "1", "MAX_SESSION_HOURS": "12"},
    {"STREAM_SHARDS": "1", "MAX_SESSION_HOURS": "1"},
    {"STREAM_SHARDS": "16", "ANALYTICS_MAX_EVENT_SIZE": "100000"},
    {"ANALYTICS_PROFILE": "seed004", "SALT_ROTATION_DAYS": "1", "STREAM_SHARDS": "16"},
]


@pytest.mark.parametrize("env", SETTINGS, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
def test_byte_mutated_batches(env: dict[str, str], rng: random.Random) -> None:
    from collector.native_plan import native_batch
    from schemas import profiles
    from scripts.seed_traffic import profile_events

    settings = Settings.from_env(env)
    native, _ = _validators(settings)
    python, _ = _validators(settings)
    python.native = None
    assert native.native is not None
    now = 1_763_900_000_000
    if "ANALYTICS_PROFILE" in env:
        events = profile_events(profiles.load(env["ANALYTICS_PROFILE"]), actors=30, count=400,
                                start_ms=now - 30 * 3_600_000, end_ms=now, seed=rng.randrange(1 << 30))
    else:
        events = generate(20, 60, now - 30 * 3_600_000, now + 3_600_000, rng.randrange(1 << 30))
    texts = [msgspec.json.encode(e) for e in events]
    taken = 0

    async def main() -> None:
        nonlocal taken
        for _ in range(4000):
            k = rng.randint(1, 8)
            start = rng.randrange(len(texts) - k)
            batch = list(texts[start : start + k])
            for _ in range(rng.randint(0, 2)):
                i = rng.randrange(k)
                batch[i] = _mutate(batch[i], rng)
            # any bytes at all: the reader must answer, never crash
            blob = b"[" + b",".join(batch) + b"]"
            for cut in (len(blob), rng.randrange(len(blob) + 1)):
                try:
                    native_batch.rows(native.native, blob[:cut], k, {}, {}, lambda s, r: "x" * 64,
                                      lambda r, n: 0, now, 0, now, now - 1, 1, 3_600_000, 86_400_000, 0)
                except UnicodeDecodeError:
                    pytest.fail(f"rows raised on {blob[:cut]!r}")
            try:
                raw = _raw([t.decode() for t in batch])
            except UnicodeDecodeError:
                continue
            if raw is None:
                continue
            skew = rng.choice([0, 0, 12_345, -99_999])
            received = now + rng.randint(-100, 100)
            data = b"[" + b",".join(raw) + b"]"
            if max(map(len, raw)) > settings.max_event_size:
                continue  # _batch does not call the reader
            took = await native._native(data, raw, received, skew, None)
            if took is None:
                continue
            want = await python.run(raw, received, skew)
            assert _view(took) == _view(want), batch
            taken += 1

    asyncio.run(main())
    assert taken > (100 if "ANALYTICS_PROFILE" in env else 800), taken
