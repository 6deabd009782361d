"""One person's pseudonyms: the single place that maps a raw id to what the store keeps of it.

An identifier is stored only as ``Pseudonymizer.digest(salt of its epoch, raw id)`` (collector/privacy.py).
So the stored forms of a person are the digests of their raw id under every salt that still exists;
a salt deleted after its epoch (and the late window) can no longer be rebuilt, and what it keyed is
anonymous from then on. Events match when any field of ``catalog.SUBJECT_FIELDS`` (every
pseudonymised identifier of the envelope) or any payload field the profile hashes
(``Profile.hashed_fields``: identifiers such as seed 002's ``worker_id``, hashed alike) holds one
of them; a dead-letter copy marks its pseudonymised identifiers ``pseudo:<digest>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import redis

from collector.privacy import Pseudonymizer
from collector.validate import PSEUDO
from schemas import keyspace, profiles
from schemas.catalog import SUBJECT_FIELDS, StoredEvent
from schemas.settings import Settings


@dataclass(frozen=True)
class Subject:
    """A person as the store knows them: pseudonym -> the salt epoch that made it."""

    pseudonyms: dict[str, int]
    payload_fields: frozenset[str] = frozenset()

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(SUBJECT_FIELDS.values())

    def matches(self, ev: StoredEvent) -> bool:
        if any(getattr(ev, f, None) in self.pseudonyms for f in self.fields):
            return True
        payload = ev.payload if isinstance(ev.payload, dict) else {}
        return any(payload.get(f) in self.pseudonyms for f in self.payload_fields)

    def matches_row(self, row: dict[str, Any]) -> bool:
        """An archive row (a column per stored field, the payload as JSON text)."""
        if any(row.get(f) in self.pseudonyms for f in self.fields):
            return True
        payload = row.get("payload")
        if self.payload_fields and isinstance(payload, str) and any(p in payload for p in self.pseudonyms):
            try:
                decoded = msgspec.json.decode(payload)
            except msgspec.DecodeError:
                return False
            return isinstance(decoded, dict) and any(
                decoded.get(f) in self.pseudonyms for f in self.payload_fields)
        return False

    def matches_redacted(self, obj: Any) -> bool:
        """A dead-letter copy of a rejected event: any ``pseudo:`` value that is one of ours."""
        if isinstance(obj, dict):
            return any(self.matches_redacted(v) for v in obj.values())
        if isinstance(obj, list):
            return any(self.matches_redacted(v) for v in obj)
        return isinstance(obj, str) and obj.startswith(PSEUDO) and obj[len(PSEUDO):] in self.pseudonyms


def salts(client: redis.Redis) -> dict[int, bytes]:
    """Every salt epoch that still exists, with its salt."""
    keys = sorted(client.scan_iter(match=keyspace.SALT_PATTERN, count=1000))
    values = client.mget(keys) if keys else []
    out: dict[int, bytes] = {}
    for key, value in zip(keys, values):
        epoch = keyspace.salt_epoch(key.decode())
        if epoch is not None and value is not None:
            out[epoch] = value
    return out


def subject(client: redis.Redis, settings: Settings, raw_id: str) -> Subject:
    """``raw_id`` through every salt that still exists (held in memory only, never stored)."""
    return Subject(
        {Pseudonymizer.digest(salt, raw_id): epoch for epoch, salt in salts(client).items()},
        profiles.load(settings.analytics_profile).hashed_fields,
    )
