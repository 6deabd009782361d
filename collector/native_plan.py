"""A profile's event catalog as the compiled batch path's ``Plan`` (``collector/native_batch.pyx``).

Each catalog event becomes a ``KindPlan``: per envelope field what its JSON value must be (the
catalog's type, bounds and pattern: a character class with a length range, or an alternation of
words), the payload's fields with their defaults, and the stored row's constant name and version
already encoded. Only what the plan can state exactly is taken: an event whose catalog uses
anything else (another pattern shape, floats, nested containers, hashed or coarsened payload
fields) is left out, and a batch holding one takes the Python path. ``plan`` answers None when
the compiled module is not built (the Python path then serves every batch).
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import msgspec.inspect as mi

from collector import batch_decoder
from schemas.catalog import EVENT_ID_EXT, STORED_ENCODER, Event

try:
    from collector import native_batch
except ImportError:  # not compiled here: the Python path only
    native_batch = None  # type: ignore[assignment]

# the catalog's pattern shapes, ending in ``(?!\n)$`` (the string's end: schemas/catalog.py) or in
# ``$`` alone (which also admits a final newline: the reader declines control characters anyway)
_CLASS = re.compile(r"^\^\[((?:\\.|[^\]\\])+)\](?:\{(\d+),(\d+)\}|(\+)|(\*))(?:\(\?!\\n\))?\$$")
_WORDS = re.compile(r"^\^\(([A-Za-z0-9_\-]+(?:\|[A-Za-z0-9_\-]+)*)\)(?:\(\?!\\n\))?\$$")
# the envelope fields the compiled reader dereferences without a check: present and typed so
_REQUIRED = {"event_id": mi.UUIDType, "event_version": mi.LiteralType, "ts_utc": mi.DateTimeType,
             "anon_village_id": mi.StrType, "app_version": mi.StrType, "platform": mi.StrType}
# and those it reads as one type when present (or null)
_OPTIONAL = {"client_ts": mi.DateTimeType, "session_id": mi.UUIDType}


class Unsupported(ValueError):
    pass


def _class_bytes(body: str) -> bytes:
    """The bytes a regex character class (``A-Za-z0-9_.:\\-``) admits: ASCII literals and ranges."""
    chars: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\":
            if i + 1 >= len(body) or body[i + 1].isalnum():
                raise Unsupported(body)  # \d, \w ... : not mirrored
            c = body[i + 1]
            i += 1
        elif c == "^" and i == 0:
            raise Unsupported(body)  # a negated class
        if i + 2 < len(body) and body[i + 1] == "-":
            hi = body[i + 2]
            if hi == "\\":
                raise Unsupported(body)
            chars += [chr(x) for x in range(ord(c), ord(hi) + 1)]
            i += 3
            continue
        chars.append(c)
        i += 1
    if any(ord(c) >= 128 for c in chars):
        raise Unsupported(body)
    return "".join(chars).encode()


def _pattern(check: Any, pattern: str, min_length: int | None, max_length: int | None) -> None:
    lo, hi = min_length or 0, -1 if max_length is None else max_length
    m = _CLASS.match(pattern)
    if m:
        check.allow(_class_bytes(m.group(1)))
        if m.group(2):
            lo, hi = max(lo, int(m.group(2))), int(m.group(3)) if hi < 0 else min(hi, int(m.group(3)))
        elif m.group(4):
            lo = max(lo, 1)
    else:
        w = _WORDS.match(pattern)
        if not w:
            raise Unsupported(pattern)
        check.words = tuple(x.encode() for x in w.group(1).split("|"))
    check.minlen, check.maxlen = lo, hi


def _check(tp: Any, required: bool, default: Any, payload: bool) -> Any:
    c = native_batch.Check()
    c.required = required
    if isinstance(tp, mi.Metadata):
        tp = tp.type
    if isinstance(tp, mi.UnionType):
        others = [t for t in tp.types if not isinstance(t, mi.NoneType)]
        if len(others) != 1 or len(others) == len(tp.types):
            raise Unsupported(tp)
        c.nullable = True
        tp = others[0].type if isinstance(others[0], mi.Metadata) else others[0]
    if isinstance(tp, mi.UUIDType):
        c.kind = native_batch.T_UUID
    elif isinstance(tp, mi.DateTimeType):
        if tp.tz is False:  # naive times only: the reader takes times with an offset
            raise Unsupported(tp)
        c.kind = native_batch.T_TIME
    elif isinstance(tp, mi.StrType):
        c.kind = native_batch.T_STR
        if tp.pattern is not None:
            _pattern(c, tp.pattern, tp.min_length, tp.max_length)
        else:
            c.minlen = tp.min_length or 0
            c.maxlen = -1 if tp.max_length is None else tp.max_length
    elif isinstance(tp, mi.IntType):
        if tp.multiple_of is not None:
            raise Unsupported(tp)
        c.kind = native_batch.T_INT
        bounds = [(tp.ge, 0), (tp.gt, 1)]
        lows = [b + d for b, d in bounds if b is not None]
        highs = [b - d for b, d in ((tp.le, 0), (tp.lt, 1)) if b is not None]
        if lows:
            c.has_ge, c.ge = True, max(lows)
        if highs:
            c.has_le, c.le = True, min(highs)
    elif isinstance(tp, mi.LiteralType):
        if all(type(v) is int for v in tp.values):
            c.kind, c.literals = native_batch.T_INT, tuple(tp.values)
        elif all(type(v) is str and v.isascii() for v in tp.values):
            c.kind, c.words = native_batch.T_STR, tuple(v.encode() for v in tp.values)
        else:
            raise Unsupported(tp)
    elif isinstance(tp, mi.BoolType):
        c.kind = native_batch.T_BOOL
    else:  # nested structs (only a payload is one: _kind), floats, containers
        raise Unsupported(tp)
    if payload:
        c.default = STORED_ENCODER.encode(default)
    return c


def _payload(cls: type) -> Any:
    info = mi.type_info(cls)
    if not isinstance(info, mi.StructType) or info.array_like or info.tag_field is not None:
        raise Unsupported(cls)
    if cls.__struct_config__.omit_defaults or not batch_decoder.plain_payload(cls):
        raise Unsupported(cls)
    if len(info.fields) > native_batch.MAX_FIELDS or hasattr(cls, "__post_init__"):
        raise Unsupported(cls)  # too wide for the plan; or a check msgspec runs on decode
    names, checks, keys = [], [], []
    for f in info.fields:
        if f.encode_name != f.name or not f.name.isascii():
            raise Unsupported(cls)
        default = None
        if not f.required:
            default = f.default if f.default is not msgspec.NODEFAULT else f.default_factory()
        checks.append(_check(f.type, f.required, default, payload=True))
        names.append(f.name.encode())
        keys.append(STORED_ENCODER.encode(f.name))
    try:
        defaults = STORED_ENCODER.encode(cls())
    except TypeError:  # a required field: no default struct
        defaults = b""
    return native_batch.StructPlan(names, checks, keys, defaults)


def _kind(name: str, version: int, cls: type[Event]) -> Any:
    kind = native_batch.KindPlan()
    kind.tag = name.encode()
    kind.head = STORED_ENCODER.encode(name) + STORED_ENCODER.encode(version)
    kind.session_end = name == "session_end"
    checks: list[Any] = [None] * len(native_batch.SLOTS)
    kind.no_payload = True
    fields = mi.type_info(cls).fields
    if hasattr(cls, "__post_init__") or not {*_REQUIRED, "event_name"} <= {f.name for f in fields}:
        raise Unsupported(name)  # a check msgspec runs on decode; a slot the reader reads blindly
    for f in fields:
        if f.name not in native_batch.SLOTS or f.encode_name != f.name:
            raise Unsupported(f.name)  # a field the stored row does not take: not mirrored
        if f.name == "event_name":
            continue
        slot = native_batch.SLOTS.index(f.name)
        tp = f.type.type if isinstance(f.type, mi.Metadata) else f.type
        if f.name in _REQUIRED and (not f.required or not isinstance(tp, _REQUIRED[f.name])):
            raise Unsupported(f.name)
        if f.name == "payload":
            if not isinstance(tp, mi.StructType) or not f.required and f.default_factory is not tp.cls:
                raise Unsupported(f.name)
            c = native_batch.Check()
            c.kind, c.required = native_batch.T_STRUCT, f.required
            c.struct = _payload(tp.cls)
            if not f.required and not c.struct.default:
                raise Unsupported(f.name)
            checks[slot] = c
            kind.no_payload = False
            continue
        if f.name in ("user_id", "anonymous_id", "client_ts", "session_id") and not f.required \
                and f.default is not None:
            raise Unsupported(f.name)
        if f.name in _OPTIONAL:
            members = tp.types if isinstance(tp, mi.UnionType) else (tp,)
            typed = [m.type if isinstance(m, mi.Metadata) else m for m in members
                     if not isinstance(m, mi.NoneType)]
            if len(typed) != 1 or not isinstance(typed[0], _OPTIONAL[f.name]):
                raise Unsupported(f.name)
        if f.name == "event_version" and tuple(tp.values) != (version,):
            raise Unsupported(f.name)  # the row stores the catalog's version: only that one
        checks[slot] = _check(f.type, f.required, None, payload=False)
    kind.checks = checks
    payload = checks[native_batch.SLOTS.index("payload")]
    kind.reserve = len(kind.head) + (0 if payload is None else len(payload.struct.default) + sum(
        len(k) + len(c.default or b"") for k, c in zip(payload.struct.keys, payload.struct.checks)))
    if kind.reserve > native_batch.MAX_RESERVE:
        raise Unsupported(name)  # its entries could outgrow the reader's buffer
    return kind


def plan(catalog: dict[tuple[str, int], type[Event]], treated: bool) -> Any:
    """The compiled path's plan of this catalog, or None (not built, or nothing it can take)."""
    if native_batch is None or treated or EVENT_ID_EXT != 1:
        return None
    by_name: dict[str, list[tuple[str, int]]] = {}
    for key in catalog:
        by_name.setdefault(key[0], []).append(key)
    kinds = []
    for name, keys in by_name.items():
        if len(keys) != 1 or not name.isascii():
            continue  # two versions of a name: the Python path tells them apart
        try:
            kinds.append(_kind(name, keys[0][1], catalog[keys[0]]))
        except Unsupported:
            continue
    kinds = kinds[: native_batch.MAX_KINDS]  # the others take the Python path
    if not kinds:
        return None
    return native_batch.Plan(kinds, max(k.reserve for k in kinds))
