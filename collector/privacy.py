"""Pseudonymisation: a keyed hash with secret salts that live in Redis and rotate by epoch.

The one pseudonym function is ``Pseudonymizer.digest``: the collector, the per-person listing and
the erasure (``aggregator/subjects.py``) all call it, so a person is found under every salt. A salt
made by this version is ``SALT_MARK`` + 32 random bytes and keys BLAKE2b (``hashlib.blake2b(key=)``,
~3x cheaper than HMAC-SHA256 here); an older salt (32 bytes, no mark) keeps HMAC-SHA256, so the
pseudonyms of an epoch never change within it. The digest is 96 bits as 24 hex characters either way.

The salt is chosen by the epoch of the event's *own* UTC day, so a late event is hashed exactly
like the on-time events of its day and daily uniques stay exact. A salt expires (Redis TTL) once
its epoch is past and the late window has closed: from then on nobody can rebuild the mapping.
Uniques across two epochs count a village once per epoch (see README, "Privacy").
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets

import redis.asyncio as aredis

from schemas import keyspace
from schemas.days import DAY_MS
from schemas.settings import Settings

DIGEST_CHARS = 24  # 96 bits: collision-free in practice, short in HLLs and streams
SALT_MARK = b"blake2b:"  # a salt that starts so keys BLAKE2b (the whole value is the key)
_blake2b = hashlib.blake2b


def new_salt() -> bytes:
    """A fresh salt: the BLAKE2b mark and 32 random bytes (40 bytes, within BLAKE2b's 64-byte key)."""
    return SALT_MARK + secrets.token_bytes(32)
MEMO_MAX = 50_000  # memoised pseudonyms per process (raw ids in this process's memory only)


class Pseudonymizer:
    def __init__(self, redis: aredis.Redis, settings: Settings) -> None:
        self.redis = redis
        self.period_ms = settings.salt_rotation_days * DAY_MS
        self.keep_ms = settings.late_window_ms + DAY_MS
        self.session_grace_ms = settings.max_session_hours * 3_600_000
        self._salts: dict[int, bytes] = {}
        # salt -> raw -> pseudonym: a batch repeats its villages and sessions; keyed by the salt
        # itself, so a salt that changed can never answer with another salt's pseudonym
        self._memo: dict[bytes, dict[str, str]] = {}
        self._memo_size = 0

    def epoch(self, ts_ms: int) -> int:
        return ts_ms // self.period_ms

    def known_salts(self) -> dict[int, bytes]:
        """A copy of the salts this process holds (epoch -> salt), for a batch to start from."""
        return dict(self._salts)

    async def salt(self, epoch: int, now_ms: int) -> bytes:
        cached = self._salts.get(epoch)
        if cached is not None:
            return cached
        key = keyspace.salt(epoch)
        expire_at_ms = max((epoch + 1) * self.period_ms + self.keep_ms, now_ms + 3_600_000)
        await self.redis.set(key, new_salt(), nx=True, pxat=expire_at_ms)
        value = await self.redis.get(key)
        if value is None:  # expired between the two calls: only possible for a long-gone epoch
            value = new_salt()
        self._salts = {e: s for e, s in self._salts.items() if e >= self.epoch(now_ms) - 2}
        self._salts[epoch] = value
        return value

    @staticmethod
    def digest(salt: bytes, raw: str) -> str:
        """The pseudonym of ``raw`` under ``salt``: the only place one is computed."""
        if salt.startswith(SALT_MARK):
            return _blake2b(raw.encode(), key=salt, digest_size=DIGEST_CHARS // 2).hexdigest()
        return hmac.new(salt, raw.encode(), hashlib.sha256).hexdigest()[:DIGEST_CHARS]

    async def pseudonym(self, raw: str, ts_ms: int, now_ms: int) -> str:
        return self.memoised(await self.salt(self.epoch(ts_ms), now_ms), raw)

    def memo(self, salt: bytes) -> dict[str, str]:
        """The memo of one salt's pseudonyms (bounded: all memos are dropped when full)."""
        memo = self._memo.get(salt)
        if memo is None:
            if len(self._memo) > 8:
                self._memo.clear()
                self._memo_size = 0
            memo = self._memo[salt] = {}
        return memo

    def memoised(self, salt: bytes, raw: str) -> str:
        """``digest(salt, raw)``, computed once per (salt, raw) while the memo holds it."""
        memo = self.memo(salt)
        value = memo.get(raw)
        if value is None:
            value = memo[raw] = self.digest(salt, raw)
            self.grew(1)
        return value

    def grew(self, n: int) -> None:
        self._memo_size += n
        if self._memo_size > MEMO_MAX:
            for memo in self._memo.values():
                memo.clear()
            self._memo_size = 0

    async def session_alias(self, raw: str, ts_ms: int, now_ms: int) -> str | None:
        """The pseudonym under the previous epoch's salt, for a session end near a rotation."""
        epoch = self.epoch(ts_ms)
        if epoch == 0 or ts_ms - epoch * self.period_ms >= self.session_grace_ms:
            return None
        return self.memoised(await self.salt(epoch - 1, now_ms), raw)

    async def subject(self, kind: str, raw: str, now_ms: int) -> str:
        """A keyed hash of a rate-limit subject (write key, token subject, client IP).

        Keyed with the current epoch's salt: the hash is the same in every collector process, so
        they share one counter, and nobody can rebuild an IP from it by trying all addresses.
        """
        salt = await self.salt(self.epoch(now_ms), now_ms)
        return kind + ":" + self.memoised(salt, kind + ":" + raw)


def mask_ip(ip: str) -> str:
    """Reduce an IP to a masked prefix (seed 002): IPv4 /24 (last octet zeroed), IPv6 /48."""
    try:
        addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        return ""
    prefix = 24 if addr.version == 4 else 48
    return str(ipaddress.ip_network(f"{addr}/{prefix}", strict=False).network_address)
