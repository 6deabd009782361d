"""Per-event validation against the catalog, time correction and pseudonymisation.

Each raw event either becomes a ``StoredEvent`` for one shard or a ``Rejection`` naming the path
and the rule it broke (``$.events[3].ts_utc: Invalid RFC3339 encoded datetime``).

Seed 004's sanitisation (strings <= 1,000 characters, arrays <= 100 items, nulls dropped) runs
before the catalog check. It is applied lazily, only when the event as sent fails the check: every
catalog string is far shorter than 1,000 characters, the catalog has no arrays, and no catalog field
accepts null where its default differs from null, so an event that passes as sent passes unchanged
after sanitisation. The hot path thus decodes each valid event exactly once.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from collector import batch_decoder, native_plan
from collector.privacy import MEMO_MAX, Pseudonymizer
from collector.redact import PSEUDO, Redactor, canonical_uuid, token_like
from collector.sanitize import TooDeep, sanitize
from collector.store import Encoded, Rejection, encoded
from schemas import keyspace, profiles
from schemas.catalog import EVENT_ID_EXT, STORED_ENCODER, Envelope, Event, StoredEvent, extras
from schemas.days import EPOCH, MS, to_ms
from schemas.settings import Settings

_ENVELOPE = msgspec.json.Decoder(Envelope)
_DECODE_ERRORS = (msgspec.ValidationError, msgspec.DecodeError, RecursionError, TooDeep)
_NO_PAYLOAD: dict[str, object] = {}
_PLAIN, _ABSENT, _BUILTINS = object(), object(), object()  # how the batch path stores a payload

def _located(index: int, exc: Exception) -> str:
    if isinstance(exc, RecursionError | TooDeep):
        return f"$.events[{index}]: nested too deeply"
    message = str(exc)
    head, sep, path = message.rpartition(" - at `")
    if sep:
        return f"$.events[{index}]{path.rstrip('`')[1:]}: {head}"
    return f"$.events[{index}]: {message}"


@dataclass
class Outcome:
    # in request order: a list, or from the compiled path a ``native_batch.Packed`` (the same
    # sequence of Encoded, kept as the append script takes it)
    by_shard: dict[int, list[Encoded]] = field(default_factory=dict)
    rejections: list[Rejection] = field(default_factory=list)
    # per shard, the positions in by_shard[shard] of events already past the late window on
    # arrival: stored (and kept aside by the workers), but never counted; the answer says how many
    late: dict[int, list[int]] = field(default_factory=dict)

    def add(self, shard: int, item: Encoded, late: bool) -> None:
        bucket = self.by_shard.setdefault(shard, [])
        if late:
            self.late.setdefault(shard, []).append(len(bucket))
        bucket.append(item)


@dataclass
class Checked:
    """One event's verdict: a stored event for a shard, or the errors that rejected it."""

    shard: int = 0
    stored: StoredEvent | None = None
    errors: list[str] = field(default_factory=list)
    reason: str = "invalid"
    name: str | None = None
    version: int | None = None


class Validator:
    def __init__(self, settings: Settings, pseudonymizer: Pseudonymizer) -> None:
        self.settings = settings
        self.pseudo = pseudonymizer
        profile = profiles.load(settings.analytics_profile)  # the event catalog of ANALYTICS_PROFILE
        self.decoders = {key: msgspec.json.Decoder(struct) for key, struct in profile.events.items()}
        self.known = ", ".join(sorted({n for n, _ in profile.events}))
        self.hashed_fields = profile.hashed_fields
        self.redactor = Redactor(settings, pseudonymizer, profile.events, profile.hashed_fields)
        self.coarsened = profile.coarsened
        try:
            self.batch_decoder, self.batch_kinds = batch_decoder.tagged(profile.events)
        except (TypeError, ValueError):  # a catalog this cannot mirror: per-event path only
            self.batch_decoder, self.batch_kinds = None, {}
        # payload structs stored as they are, no to_builtins (none when fields are hashed)
        self.plain_payloads: frozenset[type] = frozenset()
        if not self.hashed_fields and not self.coarsened:
            payloads = {
                f.type for t in self.batch_kinds for f in msgspec.structs.fields(t)
                if f.name == "payload" and isinstance(f.type, type)
            }
            payloads |= {  # a payload left out gets the catalog's own default struct
                f.type for t in profile.events.values() for f in msgspec.structs.fields(t)
                if f.name == "payload" and isinstance(f.type, type)
            }
            self.plain_payloads = frozenset(t for t in payloads if batch_decoder.plain_payload(t))
        # per tagged struct, what the batch loop needs of its kind, in one tuple: (pattern values,
        # the value combinations already checked, the Kind, name, version, is a session end,
        # how its payload is stored: _PLAIN as decoded, _ABSENT none, else via to_builtins)
        self._shapes: dict[type, tuple[Any, ...]] = {}
        for struct, kind in self.batch_kinds.items():
            payload = next((f.type for f in msgspec.structs.fields(struct) if f.name == "payload"), None)
            mode = _ABSENT if payload is None else _PLAIN if payload in self.plain_payloads else _BUILTINS
            self._shapes[struct] = (kind.values, kind.checked, kind, *kind.key,
                                    kind.key[0] == "session_end", mode)
        # the compiled batch path (collector/native_batch.pyx), None where not built or not mirrored
        self.native = native_plan.plan(profile.events, bool(self.hashed_fields or self.coarsened))
        # its memos: salt -> (raw village bytes -> (pseudonym msgpack, shard), session UUID bytes
        # -> pseudonym msgpack)
        self._native_memos: dict[bytes, tuple[dict[bytes, Any], dict[bytes, bytes]]] = {}
        # salt -> raw village -> (pseudonym, shard); salt -> session UUID int -> pseudonym
        self._villages: dict[bytes, dict[str, tuple[str, int]]] = {}
        self._sessions: dict[bytes, dict[int, str]] = {}
        self._memo_size = 0

    async def run(
        self, raw_events: list[msgspec.Raw], received_ms: int, skew_ms: int,
        historical: bool = False, client: dict[str, str] | None = None,
        sizes: list[int] | None = None,
    ) -> Outcome:
        """``client`` (a request's masked IP and UA families, see ``collector/client_info``) is
        stored with each accepted event; it never comes from the body. ``sizes``: each event's
        size as its client sent it, when a route translated it into a catalog event (the limit
        applies to what the client sent, not to the translation)."""
        fast = await self._batch(raw_events, received_ms, skew_ms, historical, client, sizes)
        if fast is not None:
            return fast
        out = Outcome()
        await self._each(out, range(len(raw_events)), raw_events, received_ms, skew_ms, historical, client, sizes)
        return out

    async def _each(
        self, out: Outcome, indices: Iterable[int], raw_events: list[msgspec.Raw], received_ms: int,
        skew_ms: int, historical: bool, client: dict[str, str] | None, sizes: list[int] | None,
    ) -> None:
        """The per-event path for these events: each stored into ``out`` or rejected."""
        oldest = received_ms - self.settings.late_window_ms  # the workers' is_late rule
        for index in indices:
            raw = raw_events[index]
            size = None if sizes is None else sizes[index]
            checked = await self.check(index, raw, received_ms, skew_ms, size=size)
            if checked.stored is not None:
                checked.stored.historical = historical
                checked.stored.client = client
                late = not historical and checked.stored.ts < oldest
                out.add(checked.shard, encoded(checked.stored), late)
                continue
            out.rejections.append(await self.rejection(index, raw, checked, received_ms, skew_ms))

    async def _batch(
        self, raw_events: list[msgspec.Raw], received_ms: int, skew_ms: int, historical: bool,
        client: dict[str, str] | None = None, sizes: list[int] | None = None,
    ) -> Outcome | None:
        """The whole batch at once when every event is valid as sent; None otherwise.

        Same results as the per-event path (which handles any batch holding a bad event): one
        typed decode of all events, salts fetched once per epoch, pseudonyms memoised per salt,
        each event encoded straight into its compact stored form.
        """
        s = self.settings
        if self.batch_decoder is None or not raw_events:
            return None
        if max(sizes or map(len, raw_events)) > s.max_event_size:
            return None
        data = b"[" + b",".join(raw_events) + b"]"
        if self.native is not None and client is None and not historical:
            native = await self._native(data, raw_events, received_ms, skew_ms, sizes)
            if native is not None:
                return native
        try:
            events = self.batch_decoder.decode(data)
        except _DECODE_ERRORS:
            return None
        if len(events) != len(raw_events):  # cannot happen: each Raw is one JSON value
            return None
        shapes = self._shapes
        limit = received_ms + s.future_margin_seconds * 1000
        pseudo = self.pseudo
        period, grace = pseudo.period_ms, pseudo.session_grace_ms
        salts: dict[int, bytes] = {}  # this batch's, so no eviction can drop one mid-batch
        digest = pseudo.digest
        shards = s.stream_shards
        treated = self.hashed_fields or self.coarsened
        encode = STORED_ENCODER.encode
        to_builtins = msgspec.to_builtins
        Ext = msgspec.msgpack.Ext
        buckets: list[list[Encoded]] = [[] for _ in range(shards)]
        late: dict[int, list[int]] = {}
        oldest = -1 if historical else received_ms - s.late_window_ms  # older: late on arrival
        bucket_ms = keyspace.DEDUP_BUCKET_MS
        skewed = skew_ms != 0  # then the row keeps ts_original too
        future: list[int] = []
        last_epoch: int | None = None  # no epoch yet (-1 is one: times before 1970)
        salt = b""
        villages: dict[str, tuple[str, int]] = {}
        sessions: dict[int, str] = {}
        grown = 0
        for index, ev in enumerate(events):
            values, checked, kind, name, version, session_end, payload_mode = shapes[type(ev)]
            values = values(ev)
            if values not in checked and not kind.admit(values):
                return None  # a pattern the catalog decode would have refused
            ts_utc = ev.ts_utc
            ts_original = (ts_utc - EPOCH) // MS  # to_ms, inlined
            ts = ts_original + skew_ms
            if ts > limit:  # rejected: the per-event path words it, below
                future.append(index)
                continue
            epoch = ts // period
            if epoch != last_epoch:
                salt = salts.get(epoch)  # type: ignore[assignment]
                if salt is None:
                    salt = salts[epoch] = await pseudo.salt(epoch, received_ms)
                villages, sessions = self._memos(salt)
                last_epoch = epoch
            raw_village = ev.anon_village_id
            found = villages.get(raw_village)
            if found is None:
                found = villages[raw_village] = (
                    digest(salt, raw_village), zlib.crc32(raw_village.encode()) % shards,
                )
                grown += 1
            session = session_alt = None
            sid = ev.session_id
            if sid is not None:
                session = sessions.get(sid.int)
                if session is None:
                    session = sessions[sid.int] = digest(salt, str(sid))
                    grown += 1
                if session_end and epoch and ts - epoch * period < grace:
                    previous = salts.get(epoch - 1)
                    if previous is None:
                        previous = salts[epoch - 1] = await pseudo.salt(epoch - 1, received_ms)
                    session_alt = digest(previous, str(sid))
            if payload_mode is _PLAIN:
                payload = ev.payload
            elif payload_mode is _ABSENT:
                payload = _NO_PAYLOAD
            else:  # encodes unlike its builtins, or has hashed fields
                payload = to_builtins(ev.payload)
                if treated:
                    self._treat(payload, salt)
            client_ts = ev.client_ts
            if client_ts is not None:
                if client_ts == ts_utc:  # the same instant: the same milliseconds
                    client_ts = True
                else:
                    client_ms = to_ms(client_ts)
                    client_ts = True if client_ms == ts_original else client_ms
            eid = ev.event_id.int.to_bytes(16, "big")
            row: tuple[Any, ...] = (
                Ext(EVENT_ID_EXT, eid), name, version, ts, ts_original if skewed else None, received_ms,
                found[0], ev.app_version, ev.platform, session, session_alt, client_ts, payload,
            )
            user, anonymous = ev.user_id, ev.anonymous_id
            if user is not None or anonymous is not None or client is not None:
                if user is not None:
                    user = pseudo.memoised(salt, user)
                if anonymous is not None:
                    anonymous = pseudo.memoised(salt, anonymous)
                row += extras(historical, user, anonymous, client)
            elif historical:
                row += (True,)
            bucket = buckets[found[1]]
            if ts < oldest:
                late.setdefault(found[1], []).append(len(bucket))
            bucket.append((eid, encode(row), ts_original // bucket_ms))  # store.Encoded
        by_shard = {shard: bucket for shard, bucket in enumerate(buckets) if bucket}
        self._grew(grown)
        out = Outcome(by_shard=by_shard, late=late)
        # the per-event path words the future events' rejections (the same check rejects them)
        await self._each(out, future, raw_events, received_ms, skew_ms, historical, client, sizes)
        return out

    async def _native(
        self, data: bytes, raw_events: list[msgspec.Raw], received_ms: int, skew_ms: int,
        sizes: list[int] | None,
    ) -> Outcome | None:
        """The compiled batch path (``collector/native_batch.pyx``): the same outcome as the loop
        in ``_batch`` for the batches it takes (neither an import nor a route's client info, and
        only the JSON it reads), None for any other."""
        s, pseudo = self.settings, self.pseudo
        salts = pseudo.known_salts()  # this batch's, as in _batch
        if len(self._native_memos) > 8:
            self._native_memos.clear()
        while True:
            got = native_plan.native_batch.rows(
                self.native, data, len(raw_events), salts, self._native_memos, pseudo.digest,
                keyspace.shard_of, received_ms, skew_ms,
                received_ms + s.future_margin_seconds * 1000, received_ms - s.late_window_ms,
                s.stream_shards, keyspace.DEDUP_BUCKET_MS, pseudo.period_ms, pseudo.session_grace_ms,
            )
            if got is None:
                return None
            if got[0] != "salt":
                break
            self._grew(got[2])
            salts[got[1]] = await pseudo.salt(got[1], received_ms)
        buckets, late, future, grown = got
        self._grew(grown)
        out = Outcome(by_shard={shard: b for shard, b in enumerate(buckets) if b}, late=late)
        await self._each(out, future, raw_events, received_ms, skew_ms, False, None, sizes)
        return out

    def _memos(self, salt: bytes) -> tuple[dict[str, tuple[str, int]], dict[int, str]]:
        villages = self._villages.get(salt)
        if villages is None:
            if len(self._villages) > 8:
                self._villages.clear()
                self._sessions.clear()
                self._memo_size = 0
            villages = self._villages[salt] = {}
        sessions = self._sessions.get(salt)
        if sessions is None:
            sessions = self._sessions[salt] = {}
        return villages, sessions

    def _grew(self, n: int) -> None:
        """Bound the memos: raw ids stay in this process's memory only, and not too many."""
        self._memo_size += n
        if self._memo_size > MEMO_MAX:
            for memo in (*self._villages.values(), *self._sessions.values()):
                memo.clear()
            self._native_memos.clear()
            self._memo_size = 0

    async def check(
        self,
        index: int,
        raw: bytes | msgspec.Raw,
        received_ms: int,
        skew_ms: int,
        pseudonyms: dict[str, str] | None = None,
        shard: int | None = None,
        size: int | None = None,
    ) -> Checked:
        """Validate one event; ``pseudonyms`` (village, session) come from a dead-letter replay;
        ``size`` is the event's size as sent, when it differs from ``raw``'s."""
        s = self.settings
        size = len(raw) if size is None else size
        if size > s.max_event_size:
            return Checked(
                errors=[
                    f"$.events[{index}]: event is {size} bytes, over the "
                    f"{s.max_event_size}-byte limit (ANALYTICS_MAX_EVENT_SIZE)"
                ],
                reason="too_large",
            )
        out = Checked()
        event = self._decode(index, raw, out)
        if event is None:
            return out
        ts_original = to_ms(event.ts_utc)
        ts = ts_original + skew_ms
        if ts > received_ms + s.future_margin_seconds * 1000:
            out.errors.append(
                f"$.events[{index}].ts_utc: event time is "
                f"{(ts - received_ms) // 1000} s in the future after clock-skew "
                f"correction (limit {s.future_margin_seconds} s)"
            )
            out.reason = "future"
            return out
        pseudonyms = pseudonyms or {}
        out.stored = await self._stored(event, ts, ts_original, received_ms, pseudonyms)
        if shard is None:
            actor = pseudonyms.get("village") or event.anon_village_id
            shard = keyspace.shard_of(actor, s.stream_shards)
        out.shard = shard
        return out

    def _decode(self, index: int, raw: bytes | msgspec.Raw, out: Checked) -> Event | None:
        try:
            return self._decode_once(index, raw, out)
        except _DECODE_ERRORS as first:  # noqa: F841 (used below, in this handler)
            obj = clean = None
            try:
                obj = msgspec.json.decode(raw)
                clean = sanitize(obj)
            except TooDeep as exc:
                first = exc
            except _DECODE_ERRORS:
                pass
            if clean is None or clean == obj:  # sanitising changes nothing: the first error stands
                out.errors, out.reason = [_located(index, first)], _kind(first)
                return None
            try:
                return self._decode_once(index, msgspec.json.encode(clean), out)
            except _DECODE_ERRORS as second:
                out.errors, out.reason = [_located(index, second)], _kind(second)
                return None

    def _decode_once(self, index: int, raw: bytes | msgspec.Raw, out: Checked) -> Event | None:
        env = _ENVELOPE.decode(raw)
        out.name, out.version = env.event_name, env.event_version
        decoder = self.decoders.get((env.event_name, env.event_version))
        if decoder is None:
            name = env.event_name if token_like(env.event_name) else "<not a name>"
            out.errors = [
                f"$.events[{index}].event_name: unknown event {name!r} version "
                f"{env.event_version} (catalog: {self.known})"
            ]
            out.reason = "unknown_event"
            return None
        return decoder.decode(raw)

    async def _stored(
        self,
        event: Event,
        ts: int,
        ts_original: int,
        received_ms: int,
        pseudonyms: dict[str, str],
    ) -> StoredEvent:
        session = session_alt = None
        if "session" in pseudonyms:
            session = pseudonyms["session"]  # the alias under the previous epoch is not kept
        elif event.session_id is not None:
            sid = str(event.session_id)
            session = await self.pseudo.pseudonym(sid, ts, received_ms)
            if event.event_name == "session_end":
                session_alt = await self.pseudo.session_alias(sid, ts, received_ms)
        village = pseudonyms.get("village") or await self.pseudo.pseudonym(
            event.anon_village_id, ts, received_ms
        )
        return StoredEvent(
            event_id=event.event_id.hex,
            name=event.event_name,
            version=event.event_version,
            ts=ts,
            ts_original=ts_original,
            received=received_ms,
            village=village,
            app_version=event.app_version,
            platform=event.platform,
            session=session,
            session_alt=session_alt,
            client_ts=to_ms(event.client_ts) if event.client_ts else None,
            payload=await self._payload(event, ts, received_ms),
            user=await self._actor(event.user_id, ts, received_ms),
            anonymous=await self._actor(event.anonymous_id, ts, received_ms),
        )

    async def _actor(self, raw: str | None, ts: int, received_ms: int) -> str | None:
        """A second actor id's pseudonym (a dead-letter replay carries it already, ``pseudo:``)."""
        if raw is None:
            return None
        if raw.startswith(PSEUDO):
            return raw.removeprefix(PSEUDO)
        return await self.pseudo.pseudonym(raw, ts, received_ms)

    async def _payload(self, event: Event, ts: int, received_ms: int) -> dict[str, object]:
        payload = msgspec.to_builtins(getattr(event, "payload", {}))
        if self.hashed_fields or self.coarsened:
            self._treat(payload, await self.pseudo.salt(self.pseudo.epoch(ts), received_ms))
        return payload

    def _treat(self, payload: dict[str, object], salt: bytes) -> None:
        """The profile's declared treatments of payload fields, in place: identifier and
        free-text fields as keyed HMACs under the event time's salt (a replayed dead-letter copy
        carries them already, as ``pseudo:`` values), coarsened numbers rounded."""
        for name in self.coarsened.keys() & payload.keys():
            value = payload[name]
            if isinstance(value, float | int) and not isinstance(value, bool):
                payload[name] = round(float(value), self.coarsened[name])
        for name in self.hashed_fields & payload.keys():
            value = payload[name]
            if isinstance(value, str) and value.startswith(PSEUDO):
                payload[name] = value.removeprefix(PSEUDO)
            elif value is not None:
                payload[name] = self.pseudo.memoised(salt, str(value))

    async def rejection(
        self, index: int, raw: bytes | msgspec.Raw, checked: Checked, received_ms: int, skew_ms: int
    ) -> Rejection:
        obj = _object(raw)
        shard = None
        if obj is not None and isinstance(obj.get("anon_village_id"), str):
            shard = keyspace.shard_of(obj["anon_village_id"], self.settings.stream_shards)
        return Rejection(
            index=index,
            event_id=_event_id(obj),
            event_name=checked.name if isinstance(checked.name, str) and token_like(checked.name) else None,
            event_version=checked.version if isinstance(checked.version, int) else None,
            errors=checked.errors,
            received=received_ms,
            event=await self._redacted(obj, received_ms, skew_ms),
            reason=checked.reason,
            skew=skew_ms,
            shard=shard,
        )

    async def _redacted(
        self, obj: dict[str, object] | None, received_ms: int, skew_ms: int
    ) -> dict[str, object] | None:
        """What the dead-letter keeps of a bad event (``collector/redact.py``: an allow-list)."""
        if obj is None:
            return None
        return await self.redactor.copy(obj, skew_ms, received_ms)


def _kind(exc: Exception) -> str:
    if isinstance(exc, msgspec.DecodeError) and not isinstance(exc, msgspec.ValidationError):
        return "malformed"
    if isinstance(exc, RecursionError | TooDeep):
        return "malformed"
    return "invalid"


def _object(raw: bytes | msgspec.Raw) -> dict[str, object] | None:
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _event_id(obj: dict[str, object] | None) -> str | None:
    return canonical_uuid(obj.get("event_id")) if obj is not None else None
