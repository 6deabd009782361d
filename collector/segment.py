"""Segment Tracking API messages mapped onto the active profile's catalog (the README's table).

One message (``track``, ``page``, ``screen``, ``identify``, ``group``, ``alias``) becomes one
catalog event, or a ``Refused`` naming why not. Only fields the catalog declares are carried over:
the payload is the message's properties (or traits) cut to the event's payload allow-list here,
before validation, so a message's other properties, its traits and the rest of its ``context``
never reach the validator, the stream or the dead-letter copy (``context.ip`` and
``context.userAgent`` are kept only as ``client_info`` reduces them: masked, and parsed). ``identify``, ``group`` and ``alias`` become
events of those names, kept only where a profile declares them (otherwise the catalog refuses them
as ``unknown_event``, with an empty payload).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta
from typing import Any

import msgspec

from collector.client_info import describe
from collector.ingest import clock_skew
from schemas.catalog import Event
from schemas.days import EPOCH, MS, to_ms
from schemas.settings import Settings

TYPES = ("track", "page", "screen", "identify", "group", "alias")
EVENT_NAMES = {"page": "page_view", "screen": "screen_view", "identify": "identify",
               "group": "group", "alias": "alias"}
UNKNOWN_VERSION = "unknown"  # app_version of a message without context.app.version
UNKNOWN_PLATFORM = "unknown"
# ids derived from messageIds (and session ids) that are not UUIDs: uuid5 in this namespace
NAMESPACE = uuid.UUID("6b1c5f0e-3c8e-5d7a-9f46-2f0d6a4c9e51")
_NOT_PLATFORM = re.compile(r"[^a-z0-9_\-]+")


class Refused(Exception):
    """A message that cannot become a catalog event: the reason (a metrics label), the error
    (a path within the message and the rule) and what is known of the event (for the dead-letter)."""

    def __init__(self, reason: str, detail: str, known: dict[str, object]) -> None:
        super().__init__(detail)
        self.reason, self.detail, self.known = reason, detail, known


def payload_fields(events: dict[tuple[str, int], type[Event]]) -> dict[tuple[str, int], frozenset[str]]:
    """Per catalog event, the payload fields it declares (its allow-list)."""
    out: dict[tuple[str, int], frozenset[str]] = {}
    for key, struct in events.items():
        names: frozenset[str] = frozenset()
        for f in msgspec.structs.fields(struct):
            if f.name == "payload" and isinstance(f.type, type) and issubclass(f.type, msgspec.Struct):
                names = frozenset(p.encode_name for p in msgspec.structs.fields(f.type))
        out[key] = names
    return out


def instant(value: object, where: str) -> int | None:
    """Epoch ms of an ISO 8601 time with an offset, None when absent; ``Refused`` reasons aside."""
    if value is None:
        return None
    try:
        parsed = msgspec.convert(value, datetime)
        if parsed.tzinfo is None:
            raise ValueError("no UTC offset")
        return to_ms(parsed)
    except (msgspec.ValidationError, ValueError, OverflowError) as exc:
        raise ValueError(f".{where}: {exc}: use ISO 8601 with an offset, e.g. 2025-09-14T10:00:00Z")


def iso(ms: int) -> str:
    return (EPOCH + ms * MS).isoformat(timespec="milliseconds")


def event_id(message_id: object, message: dict[str, Any]) -> str:
    """``messageId`` as the event id: itself when a UUID, else a UUID derived from it; without
    one, derived from the message's content (so a resent message is still a duplicate)."""
    if isinstance(message_id, str) and message_id:
        try:
            return str(uuid.UUID(message_id))
        except ValueError:
            return str(uuid.uuid5(NAMESPACE, message_id))
    content = {k: v for k, v in message.items() if k not in ("sentAt", "writeKey", "_metadata")}
    return str(uuid.uuid5(NAMESPACE, msgspec.json.encode(content, order="sorted").decode()))


def _id(value: object) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    return value if isinstance(value, str) and value else None


def actors(message: dict[str, Any]) -> dict[str, str]:
    """The catalog's actors, as seed 002 keeps them: ``user_id`` (the userId), ``anonymous_id``
    (the anonymousId) and the actor (``anon_village_id``: the user when known, else the anonymous
    id); empty when the message has neither."""
    user, anonymous = _id(message.get("userId")), _id(message.get("anonymousId"))
    out = {"user_id": user, "anonymous_id": anonymous, "anon_village_id": user or anonymous}
    return {k: v for k, v in out.items() if v is not None}


def session_id(value: object) -> str | None:
    """A session id as the catalog's UUID: itself when a UUID, else derived from it."""
    raw = _id(value)
    if raw is None:
        return None
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        return str(uuid.uuid5(NAMESPACE, "session:" + raw))


def platform(context: dict[str, Any]) -> str:
    """``context.os.name``, else ``context.device.type``, else ``context.library.name``
    (its npm scope dropped), lower-cased to the catalog's platform pattern."""
    for section, key in (("os", "name"), ("device", "type"), ("library", "name")):
        part = context.get(section)
        value = part.get(key) if isinstance(part, dict) else None
        if isinstance(value, str) and value.strip():
            name = _NOT_PLATFORM.sub("-", value.strip().lower().rpartition("/")[2]).strip("-")
            if name:
                return name[:16]
    return UNKNOWN_PLATFORM


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class Mapper:
    def __init__(self, settings: Settings, events: dict[tuple[str, int], type[Event]]) -> None:
        self.settings = settings
        self.fields = payload_fields(events)

    def event(
        self,
        message: dict[str, Any],
        kind: str | None,
        received: int,
        batch_sent_at: int | None = None,
        batch_context: dict[str, Any] | None = None,
        request_client: tuple[str | None, str | None] = (None, None),
    ) -> tuple[dict[str, Any], dict[str, str], int]:
        """The catalog event of one message (``kind``: the type a single-message route implies),
        its client (``client_info``) from ``context.ip`` and ``context.userAgent``, else from the
        request's (``request_client``: its IP and User-Agent), and its clock-skew correction (ms,
        Segment's rule, for the validator to apply: the event keeps the time as sent too, which
        the dedup buckets key on, so a retry with a later sentAt meets its first send).

        Raises ``Refused`` when the message cannot be one.
        """
        known: dict[str, Any] = {"event_id": event_id(message.get("messageId"), message)}
        kind = kind or message.get("type")
        if kind not in TYPES:
            raise Refused("invalid", f".type: {str(kind)[:32]!r} is not one of {', '.join(TYPES)}", known)
        if kind == "track":
            name = message.get("event")
            if not isinstance(name, str) or not name:
                raise Refused("invalid", ".event: a track message needs an event name", known)
        else:
            name = EVENT_NAMES[kind]
        known["event_name"] = name
        who = actors(message)
        if not who:
            raise Refused("invalid", ": a message needs a userId or an anonymousId", known)
        known.update(who)
        context = {**(batch_context or {}), **_dict(message.get("context"))}
        properties = _dict(message.get("properties"))
        try:
            original = instant(message.get("originalTimestamp"), "originalTimestamp")
            if original is None:
                original = instant(message.get("timestamp"), "timestamp")
            sent_at = instant(message.get("sentAt"), "sentAt")
        except ValueError as exc:
            raise Refused("invalid", str(exc), known) from None
        sent_at = batch_sent_at if sent_at is None else sent_at
        ts = received if original is None else original
        skew = 0
        if original is not None and sent_at is not None:
            skew = clock_skew(self.settings, received, sent_at)
        if not 0 <= ts + skew < 1 << 47 or not 0 <= ts:  # before 1970 or after the year 4400: not an event time
            raise Refused("invalid", ".timestamp: out of range after clock-skew correction", known)
        version = properties.get("event_version", 1)
        version = version if isinstance(version, int) and not isinstance(version, bool) else 1
        app = _dict(context.get("app")).get("version")
        out: dict[str, Any] = {
            **known,
            "event_version": version,
            "ts_utc": iso(ts),
            "app_version": app if isinstance(app, str) and app else UNKNOWN_VERSION,
            "platform": platform(context),
            "payload": self._payload(kind, (name, version), message, properties),
        }
        session = session_id(properties.get("session_id", context.get("session_id")))
        if session is not None:
            out["session_id"] = session
        ip, agent = context.get("ip"), context.get("userAgent")
        client = describe(ip if isinstance(ip, str) else request_client[0],
                          agent if isinstance(agent, str) else request_client[1])
        return out, client, skew

    def _payload(
        self,
        kind: str,
        key: tuple[str, int],
        message: dict[str, Any],
        properties: dict[str, Any],
    ) -> dict[str, Any]:
        allowed = self.fields.get(key)
        if not allowed:
            return {}
        source: dict[str, Any]
        if kind in ("identify", "group"):
            source = dict(_dict(message.get("traits")))
            if kind == "group":
                source["group_id"] = message.get("groupId")
        elif kind == "alias":
            source = {"previous_id": message.get("previousId")}
        else:
            source = dict(properties)
            if kind == "page" and "page" not in source:
                source["page"] = properties.get("path")
            if kind in ("page", "screen") and "name" not in source:
                source["name"] = message.get("name")
        return {k: source[k] for k in allowed if source.get(k) is not None}
