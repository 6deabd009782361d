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
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from schemas.settings import Settings
from scripts.simulate import generate
from tests.test_collector_batch import _view
from tests.test_native_batch import _raw, native_and_python

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
    native, python = native_and_python(settings)
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


# -- structured: valid-looking events whose every value is drawn at the edges of the catalog ----
_ASCII = st.text(st.characters(min_codepoint=32, max_codepoint=127), max_size=140)
_TOKENISH = st.text(st.sampled_from("abcxyzXYZ019_.:-+"), min_size=0, max_size=140)
_ODD = st.text(st.sampled_from("abc19_.:-+/ \x7f\"\\"), max_size=5)


def _jstr(s: str) -> str:
    return msgspec.json.encode(s).decode()


def _time(d: st.DrawFn) -> str:
    y = d(st.sampled_from([1, 1969, 1970, 2000, 2024, 2025, 2025, 2025, 2100, 9999]))
    if d(st.booleans()):
        mo, day, h, mi_, s = 9, 14, 10, 0, 0
    else:
        mo, day = d(st.integers(0, 13)), d(st.sampled_from([0, 1, 15, 28, 29, 30, 31, 32]))
        h, mi_, s = d(st.integers(0, 24)), d(st.sampled_from([0, 30, 59, 60])), d(st.sampled_from([0, 59, 60]))
    frac = d(st.sampled_from(["", ".", ".0", ".5", ".999", ".123456", ".1234567", ".9999995"]))
    off = d(st.sampled_from(["Z", "Z", "Z", "z", "+00:00", "-00:00", "+23:59", "-23:59", "+24:00", "+05:60",
                             "+0530", "", "+05:30:00", "Z\n"]))
    sep = d(st.sampled_from(["T", "T", "T", "T", "t", " "]))
    return f"{y:04d}-{mo:02d}-{day:02d}{sep}{h:02d}:{mi_:02d}:{s:02d}{frac}{off}"


def _uuid(d: st.DrawFn) -> str:
    u = d(st.uuids())
    return d(st.sampled_from([str(u), str(u), str(u), str(u).upper(), u.hex, "{" + str(u) + "}", "urn:uuid:" + str(u),
                              str(u)[:-1], str(u) + "0"]))


_INTS = st.sampled_from([0, 1, -1, 2, 127, 128, 255, 256, 65535, 65536, 2**31, 2**32, 2**53,
                         10**17, 10**18 - 1, 10**18, 2**63 - 1, -(2**63), 2**64,
                         604_800_000, 604_800_001, -33, -129, -32769])


@st.composite
def _value(d: st.DrawFn, field: str) -> str:
    if d(st.integers(0, 19)) == 0:
        return d(st.sampled_from(["null", "true", "false", "{}", "1.0", "-0", "01", "1e2", '""']))
    if field in ("event_id", "session_id"):
        return _jstr(_uuid(d))
    if field in ("ts_utc", "client_ts") and d(st.integers(0, 3)):
        return _jstr(_time(d))
    if field == "event_version":
        return d(st.sampled_from(["1", "2", "0", "-1", "1.0", '"1"']))
    if field in ("duration_ms", "tokens", "results"):
        return str(d(_INTS))
    if field in ("resumed", "success"):
        return d(st.sampled_from(["true", "false", "1", '"true"']))
    if field in ("kind", "reason"):
        return _jstr(d(st.sampled_from(["heartbeat", "daily", "quit", "timeout", "background", "Daily",
                                        "daily ", "dail", "quitquit", ""])))
    return _jstr(d(st.one_of(_TOKENISH, _TOKENISH, _TOKENISH, _ASCII, _ODD)))


@st.composite
def _event_text(d: st.DrawFn, base: dict) -> str:  # type: ignore[type-arg]
    fields = {k: msgspec.json.encode(v).decode() for k, v in base.items() if k != "payload"}
    payload = {k: msgspec.json.encode(v).decode() for k, v in (base.get("payload") or {}).items()}
    for _ in range(d(st.sampled_from([0, 0, 1, 1, 2]))):
        name = d(st.sampled_from(sorted(set(fields) - {"event_name"}) + ["client_ts", "session_id"]))
        fields[name] = d(_value(name))
    for _ in range(d(st.sampled_from([0, 0, 1, 2]))):
        name = d(st.sampled_from(["kind", "reason", "duration_ms", "resumed", "command", "success",
                                  "dialogue_id", "feature", "code", "content_type"]))
        payload[name] = d(_value(name))
    if d(st.integers(0, 4)) and "payload" in base:
        fields["payload"] = "{" + ",".join(f"{_jstr(k)}:{v}" for k, v in payload.items()) + "}"
    items = list(fields.items())
    if d(st.booleans()):
        items = d(st.permutations(items))
    return "{" + ",".join(f"{_jstr(k)}:{v}" for k, v in items) + "}"


_EVENTS: dict[str, list[dict]] = {}  # type: ignore[type-arg]
_VALIDATORS: dict[str, tuple] = {}  # type: ignore[type-arg]


def _setup(profile: str) -> tuple:  # type: ignore[type-arg]
    if profile not in _VALIDATORS:
        from schemas import profiles
        from scripts.seed_traffic import profile_events

        env = {"ANALYTICS_PROFILE": profile, "SALT_ROTATION_DAYS": "1", "MAX_SESSION_HOURS": "2"}
        settings = Settings.from_env(env)
        native, python = native_and_python(settings)
        now = 1_763_900_000_000
        if profile == "seed003":
            events = generate(5, 30, now - 30 * 3_600_000, now, 7)
        else:
            events = profile_events(profiles.load(profile), actors=10, count=200,
                                    start_ms=now - 30 * 3_600_000, end_ms=now, seed=7)
        _VALIDATORS[profile] = (native, python, events)
    return _VALIDATORS[profile]


@hsettings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data(), st.sampled_from(["seed003", "seed003", "seed004"]))
def test_edge_valued_events(data: st.DataObject, profile: str) -> None:
    native, python, events = _setup(profile)
    now = 1_763_900_000_000
    start = data.draw(st.integers(0, len(events) - 4))
    texts = [data.draw(_event_text(e)) for e in events[start : start + data.draw(st.integers(1, 4))]]
    raw = _raw(texts)
    if raw is None:
        return
    skew = data.draw(st.sampled_from([0, 1, -86_400_000]))

    async def main() -> None:
        took = await native._native(b"[" + b",".join(raw) + b"]", raw, now, skew, None)
        if took is not None:
            assert _view(took) == _view(await python.run(raw, now, skew)), texts

    asyncio.run(main())
