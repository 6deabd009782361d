"""``collector/native_plan.py``: what it translates must be exact, what it cannot state it refuses
(a kind left out: the Python path serves it), and no catalog may make it raise (a Validator is
built from it at startup) or hand the reader a kind it would dereference blindly."""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
import uuid
from typing import Annotated, Literal

import msgspec
import msgspec.inspect as mi
import pytest

from collector import native_plan
from schemas.catalog import CATALOG, Event, Platform, Timestamp, Version

pytestmark = pytest.mark.skipif(native_plan.native_batch is None, reason="not compiled")


def _tags(catalog: dict) -> list[bytes]:  # type: ignore[type-arg]
    p = native_plan.plan(catalog, False)
    return [] if p is None else [k.tag for k in p.kinds]


def _patterns() -> list[tuple[str, int | None, int | None]]:
    from schemas import profiles

    found = set()

    def walk(t: object) -> None:
        if isinstance(t, mi.Metadata):
            t = t.type
        if isinstance(t, mi.UnionType):
            for m in t.types:
                walk(m)
        elif isinstance(t, mi.StrType) and t.pattern:
            found.add((t.pattern, t.min_length, t.max_length))
        elif isinstance(t, mi.StructType):
            for f in t.fields:
                walk(f.type)

    for name in ("seed000", "seed001", "seed002", "seed003", "seed004"):
        for cls in profiles.load(name).events.values():
            walk(mi.type_info(cls))
    return sorted(found, key=str)


EXTRA = [r"^[a-]{1,3}$", r"^[-a]{1,3}$", r"^[\]]{1,3}$", r"^[a\-z]+$", r"^[--/]*$", r"^[\\]+$",
         r"^[a^]+$", r"^[a-b-c]+$", r"^[\.-9]+$", r"^[[a]+$", r"^[\s]+$", r"^[^a]+$", r"^[\d]+$",
         r"^[a-z]{2,4}$", r"^(a|ab)$", r"^[é]+$", r"^/[a-z]+$", r"^[a-z]{3}$", r"^[a-z]+\Z"]


@pytest.mark.parametrize("pattern,lo,hi", _patterns() + [(p, None, None) for p in EXTRA])
def test_every_pattern_is_translated_exactly_or_refused(pattern: str, lo: int | None, hi: int | None) -> None:
    """Per ASCII byte and length around the bounds, the plan's class/words and length range admit
    exactly the strings ``re.search`` does (msgspec's semantics)."""
    c = native_plan.native_batch.Check()
    try:
        native_plan._pattern(c, pattern, lo, hi)
    except native_plan.Unsupported:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "possible nested set": still a literal [
        rx = re.compile(pattern)
    if c.words is not None:
        for w in c.words:
            assert rx.search(w.decode()) and c.minlen <= len(w) and (c.maxlen < 0 or len(w) <= c.maxlen)
        return
    m = native_plan._CLASS.match(pattern)
    allowed = set(native_plan._class_bytes(m.group(1)))
    top = (c.maxlen if c.maxlen >= 0 else c.minlen + 3) + 2
    for ch in range(32, 128):  # the reader sees no control byte and no non-ASCII one
        for n in {0, 1, 2, c.minlen - 1, c.minlen, c.minlen + 1, top - 3, top - 2, top - 1}:
            if n < 0:
                continue
            s = chr(ch) * n
            mine = (ch in allowed or n == 0) and n >= c.minlen and (c.maxlen < 0 or n <= c.maxlen) \
                and n >= (lo or 0) and (hi is None or n <= hi)
            assert mine == bool(rx.search(s)) and (lo is None or n >= lo or not mine), (pattern, s)


_Wide = msgspec.defstruct("_Wide", [(f"f{i}", int, 0) for i in range(16)], kw_only=True)
_Long = msgspec.defstruct("_Long", [("s", str, "x" * 9000)], kw_only=True)


class WideEvent(Event, kw_only=True):
    event_name: Literal["wide"]
    event_version: Literal[1]
    payload: _Wide = msgspec.field(default_factory=_Wide)  # type: ignore[valid-type]


class LongEvent(Event, kw_only=True):
    event_name: Literal["long"]
    event_version: Literal[1]
    payload: _Long = msgspec.field(default_factory=_Long)  # type: ignore[valid-type]


def test_a_catalog_the_plan_cannot_state_is_left_out_not_raised() -> None:
    """A payload of more than 15 fields, more than 64 kinds, long defaults: the plan leaves
    them to the Python path (it used to raise ValueError, so a Validator could not be built)."""
    assert _tags({("wide", 1): WideEvent, **CATALOG}) == _tags(CATALOG)

    assert b"long" not in _tags({("long", 1): LongEvent, **CATALOG})
    many = {(f"k{i}", 1): CATALOG[("session_start", 1)] for i in range(70)}
    assert len(native_plan.plan(many, False).kinds) == 64


class _Checked(msgspec.Struct, kw_only=True):
    n: int = 0

    def __post_init__(self) -> None:
        if self.n == 13:
            raise ValueError("unlucky")


class PostInitEvent(Event, kw_only=True):
    event_name: Literal["checked"]
    event_version: Literal[1]
    payload: _Checked = msgspec.field(default_factory=_Checked)


def test_a_struct_with_post_init_is_left_out() -> None:
    """msgspec runs ``__post_init__`` on decode (it may refuse the event); the reader cannot."""
    assert b"checked" not in _tags({("checked", 1): PostInitEvent})


class Bare(msgspec.Struct, kw_only=True):  # a catalog class that is not an ``Event``
    event_id: uuid.UUID
    event_name: Literal["bare"]
    event_version: Literal[1]
    ts_utc: Timestamp
    anon_village_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    platform: Platform


def test_a_kind_lacking_a_field_the_reader_dereferences_is_left_out() -> None:
    """The reader reads app_version (and the other ``_REQUIRED`` slots) without checking that the
    kind has them: a kind lacking one crashed the process (NULL dereference) on its first event."""
    assert b"bare" not in _tags({("bare", 1): Bare})
    code = (
        "from tests.test_native_plan import Bare; from collector import native_plan as n\n"
        "p = n.native_batch.Plan([n._kind('bare', 1, Bare)], 64)\n"
        "d = b'[{\"event_id\":\"00000000-0000-0000-0000-000000000001\",\"event_name\":\"bare\",'"
        " b'\"event_version\":1,\"ts_utc\":\"2025-01-01T00:00:00Z\",\"anon_village_id\":\"v\",\"platform\":\"ios\"}]'\n"
        "print(n.native_batch.rows(p, d, 1, {0: b's'}, {}, lambda s, r: 'x', lambda r, k: 0,"
        " 0, 0, 1 << 60, 0, 1, 3600000, 1 << 50, 0))\n"
    )
    try:
        native_plan._kind("bare", 1, Bare)
    except native_plan.Unsupported:
        return
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-500:]


Version, Platform  # noqa: B018  (imported for the structs above)


def test_a_trailing_newline_is_refused_by_the_python_path() -> None:
    """The compiled reader declines escapes, so it never takes these; the Python path (its oracle)
    once accepted them (``$`` under ``re.search`` matches before a final newline): a platform, an
    app version, a payload word with a trailing newline are refused (the patterns end in ``(?!\\n)$``)."""
    import asyncio

    from schemas.settings import Settings
    from scripts.simulate import generate
    from tests.test_collector_batch import _validators
    from tests.test_native_batch import _raw

    python, per_event = _validators(Settings.from_env({}))
    python.native = None
    now = 1_763_900_000_000
    event = next(e for e in generate(3, 3, now - 3_600_000, now, 5) if e["event_name"] == "village_active")
    for change in ({"platform": "ios\n"}, {"app_version": "1.4.2\n"}, {"payload": {"kind": "daily\n"}}):
        raw = _raw([msgspec.json.encode({**event, **change}).decode()])
        for v in (python, per_event):
            out = asyncio.run(v.run(raw, now, 0))
            assert not out.by_shard and out.rejections, change
