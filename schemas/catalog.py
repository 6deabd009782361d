"""The event catalog (seed 003): msgspec structs that the hot path decodes into.

The JSON Schema documents in ``schemas/events/`` are generated from these structs
(``python -m schemas.export``) and checked in; ``tests/test_catalog.py`` fails when they drift.
Payload structs list the allowed fields: anything else a client sends is dropped on decode.
Strings are constrained to identifier-like patterns so no free-form text is accepted. Each pattern
ends in ``(?!\n)$``: the end of the string both for Python's ``re`` (where ``$`` alone also matches
before a final newline, so ``"ios\n"`` would pass) and for JSON Schema's ECMA-262 regexes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

Timestamp = Annotated[
    datetime,
    msgspec.Meta(tz=True, description="RFC 3339 timestamp with an offset, e.g. 2025-09-14T10:00:00Z"),
]
Token = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_.:\-]{1,64}(?!\n)$")]
ActorId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Version = Annotated[str, msgspec.Meta(pattern=r"^[0-9A-Za-z.+\-]{1,32}(?!\n)$")]
Platform = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_\-]{1,16}(?!\n)$")]


# -- payloads: the allow-list of fields per event --------------------------------------------
class VillageActivePayload(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    kind: Annotated[str, msgspec.Meta(pattern=r"^(heartbeat|daily)(?!\n)$")] = "heartbeat"


class SessionStartPayload(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    resumed: bool = False


class SessionEndPayload(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    reason: Annotated[str, msgspec.Meta(pattern=r"^(background|timeout|quit)(?!\n)$")] = "quit"
    duration_ms: Annotated[int, msgspec.Meta(ge=0, le=7 * 86_400_000)] | None = None


class DialogueOpenPayload(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    dialogue_id: Token


class CommandExecutedPayload(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    command: Token
    success: bool = True


# -- events ------------------------------------------------------------------------------------
class Event(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    """Common fields of every catalog event."""

    event_id: uuid.UUID
    event_name: str
    event_version: Annotated[int, msgspec.Meta(ge=1)]
    ts_utc: Timestamp
    client_ts: Timestamp | None = None
    anon_village_id: ActorId
    session_id: uuid.UUID | None = None
    app_version: Version
    platform: Platform
    # a second kind of actor, for catalogs that count signed-in users and anonymous visitors
    # apart (seed 002); pseudonymised like the village, and not the partition key
    user_id: ActorId | None = None
    anonymous_id: ActorId | None = None


class VillageActive(Event, kw_only=True):
    event_name: Literal["village_active"]
    event_version: Literal[1]
    payload: VillageActivePayload = msgspec.field(default_factory=VillageActivePayload)


class SessionStart(Event, kw_only=True):
    event_name: Literal["session_start"]
    event_version: Literal[1]
    session_id: uuid.UUID
    payload: SessionStartPayload = msgspec.field(default_factory=SessionStartPayload)


class SessionEnd(Event, kw_only=True):
    event_name: Literal["session_end"]
    event_version: Literal[1]
    session_id: uuid.UUID
    payload: SessionEndPayload = msgspec.field(default_factory=SessionEndPayload)


class DialogueOpen(Event, kw_only=True):
    event_name: Literal["dialogue_open"]
    event_version: Literal[1]
    payload: DialogueOpenPayload


class CommandExecuted(Event, kw_only=True):
    event_name: Literal["command_executed"]
    event_version: Literal[1]
    payload: CommandExecutedPayload


CATALOG: dict[tuple[str, int], type[Event]] = {
    ("village_active", 1): VillageActive,
    ("session_start", 1): SessionStart,
    ("session_end", 1): SessionEnd,
    ("dialogue_open", 1): DialogueOpen,
    ("command_executed", 1): CommandExecuted,
}


class Envelope(msgspec.Struct, forbid_unknown_fields=False):
    """Just enough of an event to find its catalog entry."""

    event_name: str
    event_version: int = 1


class Batch(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    """The native batch: events stay raw so each is validated, and rejected, on its own."""

    batch_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    sent_at: Timestamp | None = None
    events: list[msgspec.Raw]


# -- what the stream holds -----------------------------------------------------------------------
EVENT_ID_EXT = 1  # msgpack ext type of a stored event id: the UUID's 16 raw bytes


class StoredEvent(msgspec.Struct, array_like=True, omit_defaults=True):
    """A validated, pseudonymised event as appended to a shard's stream (msgpack, array-like).

    Times are epoch milliseconds: ``ts`` is the skew-corrected event time that every KPI keys on,
    ``ts_original`` what the client sent, ``received`` the server's arrival time.
    ``session_alt`` is the session pseudonym under the previous salt epoch, set only near an
    epoch boundary so that a session spanning a rotation still pairs. ``historical`` marks an
    event that an admin imported (``POST /internal/analytics/import``); it is last and omitted
    when false, so ordinary events pay nothing for it.

    Compact wire form (written by the collector, see ``compact``; the full form decodes too):
    ``event_id`` as an ext of the UUID's 16 bytes instead of 32 hex characters, ``ts_original``
    nil when equal to ``ts`` and ``client_ts`` true when equal to ``ts_original``. ``__post_init__``
    expands them on decode, so readers always see the hex string and the two integers.
    """

    event_id: str | msgspec.msgpack.Ext
    name: str
    version: int
    ts: int
    ts_original: int | None
    received: int
    village: str
    app_version: str
    platform: str
    session: str | None = None
    session_alt: str | None = None
    client_ts: int | bool | None = None
    payload: dict[str, Any] = {}
    historical: bool = False  # came in by the admin import path: the late window does not apply
    user: str | None = None  # pseudonym of ``user_id``
    anonymous: str | None = None  # pseudonym of ``anonymous_id``
    client: dict[str, str] | None = None  # ``ClientInfo`` of the request: masked IP, UA families

    def __post_init__(self) -> None:
        if self.ts_original is None:
            self.ts_original = self.ts
        if self.client_ts is True:
            self.client_ts = self.ts_original
        if type(self.event_id) is msgspec.msgpack.Ext:
            self.event_id = self.event_id.data.hex()


def compact(ev: StoredEvent) -> tuple[Any, ...]:
    """``ev`` in the compact wire form (a tuple that msgpack-encodes as the struct's array)."""
    eid: Any = ev.event_id
    if isinstance(eid, str) and len(eid) == 32:
        try:
            raw = bytes.fromhex(eid)
        except ValueError:
            raw = b""
        if raw.hex() == eid:  # only what decodes back to the same string
            eid = msgspec.msgpack.Ext(EVENT_ID_EXT, raw)
    out: tuple[Any, ...] = (
        eid, ev.name, ev.version, ev.ts, None if ev.ts_original == ev.ts else ev.ts_original,
        ev.received, ev.village, ev.app_version, ev.platform, ev.session, ev.session_alt,
        True if ev.client_ts is not None and ev.client_ts == ev.ts_original else ev.client_ts,
        ev.payload,
    )
    return out + extras(ev.historical, ev.user, ev.anonymous, ev.client)


def extras(
    historical: bool, user: str | None, anonymous: str | None, client: dict[str, str] | None
) -> tuple[Any, ...]:
    """The compact form's trailing fields: as few as carry a value (defaults are left off)."""
    if user is None and anonymous is None and client is None:
        return (True,) if historical else ()
    return (historical, user, anonymous, client)


# Identifier fields that name a person (the profile's actor, seed 004's user or device): the
# envelope field -> the StoredEvent field that keeps its keyed HMAC (pseudonymised with the salt of
# the event's epoch). The per-person listing and erasure find a person through every field named
# here (aggregator/subjects.py), so a new pseudonymised identifier is covered by adding it here.
# (tests/test_lifecycle.py fails when an envelope field typed ActorId is missing here)
SUBJECT_FIELDS: dict[str, str] = {
    "anon_village_id": "village", "user_id": "user", "anonymous_id": "anonymous",
}

STORED_LIST_DECODER = msgspec.msgpack.Decoder(list[StoredEvent])
STORED_ENCODER = msgspec.msgpack.Encoder()


def schema_id(name: str, version: int) -> str:
    return f"{name}.v{version}"
