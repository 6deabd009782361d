"""The dead-letter copy of a rejected event, redacted by allow-list.

Only what the catalog declares survives, and only in a safe form: the actor and session ids (and a
profile's ``hashed_fields``) as ``pseudo:<hmac>``, event ids that are UUIDs, token-like strings,
numbers and booleans at declared names, and the declared payload object. Everything else is
replaced: a value of the wrong shape at a declared name (an object where an id belongs), free text,
and every key the catalog does not declare, whose name is replaced too (``<undeclared 1>``), since
a key can carry an identifier as well as a value can (``"client_ip"``, ``"user": {"id": ...}``).

Identifiers are hashed with the salt of the event's own time, as an accepted event's would be, so
a replay stores the same pseudonyms; but only when that time is one an accepted event could have
(inside the late window and the future margin). Any other time, or an unreadable one, takes the
salt of the arrival time, so a rejected event never makes a salt for an epoch of its choosing.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import msgspec

from collector.privacy import Pseudonymizer
from schemas.catalog import Event
from schemas.days import to_ms
from schemas.settings import Settings

PSEUDO = "pseudo:"  # marks an identifier that the dead-letter copy already pseudonymised
# the envelope's actor, session and second actors (seed 002's user and anonymous ids, Segment's)
PSEUDONYMISED = frozenset({"anon_village_id", "session_id", "user_id", "anonymous_id"})
UUIDS = frozenset({"event_id"})
MAX_FIELDS = 50


def token_like(value: str) -> bool:
    return len(value) <= 64 and all(c.isalnum() or c in "_.:-+" for c in value)


def canonical_uuid(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def shape(value: object) -> str:
    """What replaces a value that is not kept: its kind and size, never its content."""
    if isinstance(value, str):
        return f"<redacted {len(value)} chars>"
    if isinstance(value, dict):
        return f"<redacted object of {len(value)} fields>"
    if isinstance(value, list):
        return f"<redacted list of {len(value)}>"
    return "<redacted>"


class Redactor:
    def __init__(
        self,
        settings: Settings,
        pseudonymizer: Pseudonymizer,
        events: dict[tuple[str, int], type[Event]],
        hashed_fields: frozenset[str],
    ) -> None:
        self.settings = settings
        self.pseudo = pseudonymizer
        self.hashed = PSEUDONYMISED | hashed_fields
        envelope: set[str] = set()
        payloads: set[str] = set()
        for struct in events.values():
            for f in msgspec.structs.fields(struct):
                envelope.add(f.name)
                if f.name == "payload" and isinstance(f.type, type):
                    payloads |= {p.name for p in msgspec.structs.fields(f.type)}
        self.envelope = frozenset(envelope)
        self.payload = frozenset(payloads)

    def salt_time(self, obj: dict[str, object], skew_ms: int, received_ms: int) -> int:
        """The time whose salt hashes the copy's identifiers (see the module's docstring)."""
        ts = _ts_hint(obj.get("ts_utc"), skew_ms)
        s = self.settings
        if ts is None or not (
            received_ms - s.late_window_ms <= ts <= received_ms + s.future_margin_seconds * 1000
        ):
            return received_ms
        return ts

    async def copy(self, obj: dict[str, object], skew_ms: int, received_ms: int) -> dict[str, object]:
        ts = self.salt_time(obj, skew_ms, received_ms)
        out: dict[str, object] = {}
        undeclared = 0
        for key, value in list(obj.items())[:MAX_FIELDS]:
            if value is None:
                continue
            if key not in self.envelope:
                undeclared += 1
                out[f"<undeclared {undeclared}>"] = shape(value)
            elif key == "payload" and isinstance(value, dict):
                out[key] = await self._payload(value, ts, received_ms)
            else:
                out[key] = await self._value(key, value, ts, received_ms)
        return out

    async def _payload(self, payload: dict[object, object], ts: int, received_ms: int) -> dict[str, object]:
        out: dict[str, object] = {}
        undeclared = 0
        for key, value in list(payload.items())[:MAX_FIELDS]:
            if value is None:
                continue
            if key not in self.payload:
                undeclared += 1
                out[f"<undeclared {undeclared}>"] = shape(value)
            else:
                out[str(key)] = await self._value(str(key), value, ts, received_ms)
        return out

    async def _value(self, key: str, value: object, ts: int, received_ms: int) -> object:
        if isinstance(value, bool) or (isinstance(value, int | float) and key not in self.hashed):
            return value
        if key in UUIDS:
            return canonical_uuid(value) or shape(value)
        if key in self.hashed:
            if isinstance(value, str) and value.startswith(PSEUDO):  # a replayed copy
                return value if token_like(value) else shape(value)
            if isinstance(value, str | int):
                return PSEUDO + await self.pseudo.pseudonym(str(value), ts, received_ms)
            return shape(value)
        if isinstance(value, str) and token_like(value):
            return value
        return shape(value)


def _ts_hint(value: object, skew_ms: int) -> int | None:
    if isinstance(value, str):
        try:
            parsed = msgspec.convert(value, datetime)
            if parsed.tzinfo is not None:
                return to_ms(parsed) + skew_ms
        except (msgspec.ValidationError, OverflowError, ValueError):
            pass
    return None
