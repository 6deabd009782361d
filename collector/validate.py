"""Per-event validation against the catalog, time correction and pseudonymisation.

Each raw event either becomes a ``StoredEvent`` for one shard or a ``Rejection`` naming the path
and the rule it broke (``$.events[3].ts_utc: Expected `str`, got `int```).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from collector.privacy import Pseudonymizer
from collector.store import Rejection
from schemas import keyspace
from schemas.catalog import CATALOG, Envelope, Event, SessionEnd, StoredEvent
from schemas.days import to_ms
from schemas.settings import Settings

_ENVELOPE = msgspec.json.Decoder(Envelope)
_DECODERS = {key: msgspec.json.Decoder(struct) for key, struct in CATALOG.items()}
_IDENTIFIER_FIELDS = frozenset({"anon_village_id", "session_id", "user_id", "anonymous_id", "ip"})


def _located(index: int, exc: msgspec.ValidationError | msgspec.DecodeError) -> str:
    message = str(exc)
    head, sep, path = message.rpartition(" - at `")
    if sep:
        return f"$.events[{index}]{path.rstrip('`')[1:]}: {head}"
    return f"$.events[{index}]: {message}"


@dataclass
class Outcome:
    by_shard: dict[int, list[StoredEvent]] = field(default_factory=dict)
    positions: dict[int, list[int]] = field(default_factory=dict)  # shard -> request indexes
    rejections: list[Rejection] = field(default_factory=list)


class Validator:
    def __init__(self, settings: Settings, pseudonymizer: Pseudonymizer) -> None:
        self.settings = settings
        self.pseudo = pseudonymizer

    async def run(
        self, raw_events: list[msgspec.Raw], received_ms: int, skew_ms: int
    ) -> Outcome:
        out = Outcome()
        s = self.settings
        future_limit = received_ms + s.future_margin_seconds * 1000
        for index, raw in enumerate(raw_events):
            errors: list[str] = []
            name: str | None = None
            version: int | None = None
            event: Event | None = None
            if len(raw) > s.max_event_size:
                errors.append(
                    f"$.events[{index}]: event is {len(raw)} bytes, over the "
                    f"{s.max_event_size}-byte limit (ANALYTICS_MAX_EVENT_SIZE)"
                )
            else:
                try:
                    env = _ENVELOPE.decode(raw)
                    name, version = env.event_name, env.event_version
                    decoder = _DECODERS.get((name, version))
                    if decoder is None:
                        known = sorted({n for n, _ in CATALOG})
                        errors.append(
                            f"$.events[{index}].event_name: unknown event {name!r} version "
                            f"{version} (catalog: {', '.join(known)})"
                        )
                    else:
                        event = decoder.decode(raw)
                except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                    errors.append(_located(index, exc))
            if event is not None:
                ts_original = to_ms(event.ts_utc)
                ts = ts_original + skew_ms
                if ts > future_limit:
                    errors.append(
                        f"$.events[{index}].ts_utc: event time is "
                        f"{(ts - received_ms) // 1000} s in the future after clock-skew "
                        f"correction (limit {s.future_margin_seconds} s)"
                    )
                else:
                    stored = await self._stored(event, ts, ts_original, received_ms)
                    shard = keyspace.shard_of(event.anon_village_id, s.stream_shards)
                    out.by_shard.setdefault(shard, []).append(stored)
                    out.positions.setdefault(shard, []).append(index)
                    continue
            out.rejections.append(
                Rejection(
                    index=index,
                    event_id=_event_id(raw),
                    event_name=name if isinstance(name, str) else None,
                    event_version=version if isinstance(version, int) else None,
                    errors=errors,
                    received=received_ms,
                    event=await self._redacted(raw, received_ms),
                )
            )
        return out

    async def _stored(
        self, event: Event, ts: int, ts_original: int, received_ms: int
    ) -> StoredEvent:
        session = session_alt = None
        if event.session_id is not None:
            sid = str(event.session_id)
            session = await self.pseudo.pseudonym(sid, ts, received_ms)
            if isinstance(event, SessionEnd):
                session_alt = await self.pseudo.session_alias(sid, ts, received_ms)
        return StoredEvent(
            event_id=event.event_id.hex,
            name=event.event_name,
            version=event.event_version,
            ts=ts,
            ts_original=ts_original,
            received=received_ms,
            village=await self.pseudo.pseudonym(event.anon_village_id, ts, received_ms),
            app_version=event.app_version,
            platform=event.platform,
            session=session,
            session_alt=session_alt,
            client_ts=to_ms(event.client_ts) if event.client_ts else None,
            payload=msgspec.to_builtins(event.payload),
        )

    async def _redacted(self, raw: msgspec.Raw, received_ms: int) -> dict[str, object] | None:
        """What the dead-letter keeps of a bad event: identifiers hashed, no free text."""
        try:
            obj = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return None
        if not isinstance(obj, dict):
            return None
        return {k: await self._scrub(k, v, received_ms) for k, v in obj.items()}

    async def _scrub(self, key: str, value: object, received_ms: int) -> object:
        if key in _IDENTIFIER_FIELDS and not isinstance(value, (dict, list)):
            return "pseudo:" + await self.pseudo.pseudonym(str(value), received_ms, received_ms)
        if isinstance(value, dict):
            return {k: await self._scrub(k, v, received_ms) for k, v in list(value.items())[:50]}
        if isinstance(value, list):
            return [await self._scrub(key, v, received_ms) for v in value[:20]]
        if isinstance(value, str):
            return value if _token_like(value) else f"<redacted {len(value)} chars>"
        return value


def _token_like(value: str) -> bool:
    return len(value) <= 64 and all(c.isalnum() or c in "_.:-+" for c in value)


def _event_id(raw: msgspec.Raw) -> str | None:
    try:
        obj = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    value = obj.get("event_id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) and _token_like(value) else None
