"""After a run through the real collector and workers, no key or value in Redis holds a raw
identifier, an IP address, a User-Agent or free text that clients sent."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import redis

from tests import services
from tests.test_collector_support import HEADERS, ROUTE, batch, event

IPS = ["203.0.113.77", "198.51.100.23", "2001:db8::beef:1"]
USER_AGENT = "VillageClient/9.9 (secret-device-model-XQ7)"
FREE_TEXT = "Hello my name is Ada Lovelace"
EMAIL = "ada@example.org"


def everything(r: redis.Redis) -> list[bytes]:
    """Every key name and every value in the database, read by type (no compressed dumps)."""
    out: list[bytes] = []
    for key in r.scan_iter(count=1000):
        out.append(key)
        kind = r.type(key).decode()
        if kind == "string":
            out.append(r.get(key) or b"")
        elif kind == "hash":
            for f, v in r.hgetall(key).items():
                out += [f, v]
        elif kind == "list":
            out += r.lrange(key, 0, -1)
        elif kind == "set":
            out += list(r.smembers(key))
        elif kind == "zset":
            out += [m for m, _ in r.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            for _id, fields in r.xrange(key):
                for f, v in fields.items():
                    out += [f, v]
        else:
            raise AssertionError(f"unexpected type {kind} of {key!r}")
    return out


def test_no_raw_identifier_ip_or_text_at_rest(env, r, settings, rng):
    villages = [f"village-raw-{rng.getrandbits(40):010x}" for _ in range(6)]
    sessions = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(6)]
    good, bad = [], []
    for v, s in zip(villages, sessions):
        good += [event(rng, "session_start", anon_village_id=v, session_id=s),
                 event(rng, "session_end", anon_village_id=v, session_id=s),
                 event(rng, "command_executed", anon_village_id=v,
                       payload={"command": "build", "email": EMAIL, "note": FREE_TEXT})]
        bad += [event(rng, "dialogue_open", anon_village_id=v, session_id=s,
                      payload={"dialogue_id": FREE_TEXT, "user_id": v}),
                event(rng, "village_active", anon_village_id=v, ts_utc=FREE_TEXT, user_id=EMAIL)]
    keys = [[f"wk-{i}-{j}-{rng.getrandbits(32):08x}" for j in range(4)] for i in range(len(IPS))]
    run_env = {**env, "RATE_LIMIT_PER_MINUTE": "3",
               "ANALYTICS_WRITE_KEYS": ",".join(k for row in keys for k in row)}
    collector = services.collector(run_env)
    worker = services.aggregator(run_env, "privacy-worker")
    try:
        with httpx.Client(base_url=collector.url, timeout=30) as c:
            for i, ip in enumerate(IPS):
                chunk = slice(i * len(good) // 3, (i + 1) * len(good) // 3)
                headers = {**HEADERS, "X-Forwarded-For": ip, "User-Agent": USER_AGENT}
                sends = [good[chunk] + bad, [], [], good[:1]]
                if time.time() % 60 > 55:  # keep the four requests inside one rate-limit minute
                    time.sleep(60.2 - time.time() % 60)
                codes = [
                    c.post(ROUTE, headers={**headers, "X-Write-Key": key},
                           content=json.dumps(batch(events))).status_code
                    for key, events in zip(keys[i], sends)
                ]
                # four keys used once each: only the IP's own count can refuse the fourth
                assert codes == [202, 202, 202, 429], codes
        services.wait_drained(r, settings)
    finally:
        worker.stop()
        collector.stop()

    blob = b"\n".join(everything(r))
    assert b"analytics:{s" in blob and len(blob) > 1000  # the scan saw the pipeline's keys
    needles = [*villages, *sessions, *(uuid.UUID(s).hex for s in sessions), *IPS,
               USER_AGENT, "secret-device-model", FREE_TEXT, EMAIL, *(k for row in keys for k in row)]
    found = [n for n in needles if n.encode() in blob]
    assert found == [], f"raw values at rest: {found}"


def test_pseudonyms_follow_their_salts_scheme():
    """A salt this version makes keys BLAKE2b; a salt made before (no mark) keeps HMAC-SHA256, so
    the pseudonyms of an epoch that began under an older collector do not change within it. Both
    are 24 hex characters, and ``digest`` is the one function that computes either."""
    import hashlib
    import hmac as hmac_

    from collector.privacy import SALT_MARK, Pseudonymizer, new_salt

    fresh, older = new_salt(), bytes(range(32))
    assert fresh.startswith(SALT_MARK) and len(fresh) == len(SALT_MARK) + 32
    assert Pseudonymizer.digest(fresh, "village-1") == hashlib.blake2b(
        b"village-1", key=fresh, digest_size=12).hexdigest()
    assert Pseudonymizer.digest(older, "village-1") == hmac_.new(
        older, b"village-1", hashlib.sha256).hexdigest()[:24]
    assert {len(Pseudonymizer.digest(s, "v")) for s in (fresh, older)} == {24}
    assert Pseudonymizer.digest(fresh, "v") != Pseudonymizer.digest(new_salt(), "v")
