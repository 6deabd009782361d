"""``GET /internal/analytics/privacy-report`` (staff or admin): what is collected and what is kept.

Per event type of the active profile, every field the catalog accepts and how it is treated; the
retention settings in force (with an admin's run-time changes); the salt epochs and when each salt
is deleted; how much rests in each place; how many requests were dropped for opt-out. Field
treatments are derived from the catalog (``schemas/catalog.py``, the profile's ``hashed_fields``),
so a new field shows up with its treatment. The dashboard shows it at ``/dashboard/privacy``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import redis
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from aggregator import places
from aggregator.archive import open_archive
from aggregator.subjects import salts
from kpi_api.auth import guard
from kpi_api.subjects import sync_client
from schemas import keyspace, profiles
from schemas.catalog import SUBJECT_FIELDS
from schemas.days import DAY_MS, day_of_ms
from schemas.settings import Settings

RETENTION = ("analytics_retention_days", "metrics_retention_days", "archive_retention_days",
             "late_window_hours", "salt_rotation_days", "debug_buffer_ttl_seconds",
             "deadletter_maxlen")
# envelope fields that are neither identifiers nor payload
_ENVELOPE = {
    "event_id": "kept (a random id the client draws; the idempotency key)",
    "event_name": "allow-listed (the catalog's event names)",
    "event_version": "allow-listed (the catalog's versions)",
    "ts_utc": "kept, corrected for the client's clock skew (the day every KPI keys on)",
    "client_ts": "kept",
    "session_id": "pseudonymised (keyed hash, BLAKE2b or HMAC-SHA256 under an older salt, with the salt of the event's epoch)",
    "app_version": "allow-listed (version pattern)",
    "platform": "allow-listed (platform pattern)",
}
REQUEST_FIELDS = {
    "ip address": "hashed (keyed hash, only in rate-limit counters that expire within 2 minutes); "
                  "masked (host part zeroed) where a route keeps the client (collector/client_info.py)",
    "user agent": "coarsened to browser, OS and device families where a route keeps the client; "
                  "never stored as sent",
    "any other field": "dropped on decode (payloads are allow-lists)",
}


def treatment(name: str, profile: profiles.Profile, payload: bool) -> str:
    if not payload and name in SUBJECT_FIELDS:
        return "pseudonymised (keyed hash, BLAKE2b or HMAC-SHA256 under an older salt, with the salt of the event's epoch; the raw id is never stored)"
    if not payload and name in _ENVELOPE:
        return _ENVELOPE[name]
    if payload and name in profile.hashed_fields:
        return "hashed (keyed hash, BLAKE2b or HMAC-SHA256 under an older salt, with the salt of the event's epoch; free text never stored)"
    if payload and name in profile.coarsened:
        return f"coarsened (rounded to {profile.coarsened[name]} decimals)"
    return "allow-listed (a declared field, typed; strings are identifier-like tokens, no free text)" if payload else "kept"


def fields_of(event: type, profile: profiles.Profile) -> dict[str, str]:
    info = msgspec.inspect.type_info(event)
    out: dict[str, str] = {}
    for f in info.fields:
        if f.name == "payload":
            payload = f.type
            kinds = payload.types if isinstance(payload, msgspec.inspect.UnionType) else (payload,)
            for k in kinds:
                if isinstance(k, msgspec.inspect.StructType):
                    for pf in k.fields:
                        out[f"payload.{pf.name}"] = treatment(pf.name, profile, True)
        else:
            out[f.name] = treatment(f.name, profile, False)
    return out


def at_rest(client: redis.Redis, settings: Settings) -> dict[str, Any]:
    pipe = client.pipeline(transaction=False)
    plan: list[str] = []
    for place in places.streams(settings) + [places.REJECTIONS]:
        pipe.xlen(place.key)
        plan.append(place.kind)
    # copies of events in the debug buffers older versions wrote (the recent-events view keeps
    # none: it shows events of the shard streams, counted above): 0 once those lists expired
    for place in places.buffers(settings):
        pipe.llen(place.key)
        plan.append("recent")
    pipe.xlen(keyspace.ERASURES)
    plan.append("erasure_records")
    counts: dict[str, int] = {}
    for kind, n in zip(plan, pipe.execute()):
        counts[kind] = counts.get(kind, 0) + int(n)
    out: dict[str, Any] = {
        "stream_entries": {k: counts[k] for k in ("events", "late", "deadletter")},
        "rejections": counts["rejections"], "debug_buffer_events": counts["recent"],
        "erasure_records": counts["erasure_records"],
    }
    archive = open_archive(settings.archive_url)
    out["archive_rows"] = archive.count() if archive is not None else None
    return out


def report(client: redis.Redis, settings: Settings) -> dict[str, Any]:
    profile = profiles.load(settings.analytics_profile)
    now = int(time.time() * 1000)
    epochs = []
    period = settings.salt_rotation_days * DAY_MS
    for epoch in sorted(salts(client)):
        pttl = client.pttl(keyspace.salt(epoch))
        epochs.append({
            "epoch": epoch, "from_day": day_of_ms(epoch * period),
            "to_day": day_of_ms((epoch + 1) * period - 1),
            "deleted_at_ms": now + pttl if pttl >= 0 else None,
            "deleted_on_day": day_of_ms(now + pttl) if pttl >= 0 else None,
        })
    opt = {k.decode(): int(v) for k, v in client.hgetall(keyspace.OPT_OUTS).items()}
    return {
        "profile": profile.name,
        "events": {f"{name}.v{version}": fields_of(event, profile)
                   for (name, version), event in sorted(profile.events.items())},
        "request_fields": REQUEST_FIELDS,
        "retention": {name: getattr(settings, name) for name in RETENTION},
        "archive_url": settings.archive_url or None,
        "salt_epochs": epochs,
        "at_rest": at_rest(client, settings),
        "opt_outs": {"total": sum(opt.values()), **opt},
        "aggregates": "counters and HyperLogLog sketches per day: no identifier, kept "
                      f"{settings.metrics_retention_days} days",
    }


@guard()
async def privacy_report(request: Request) -> Response:
    """What is collected per event type, how it is treated, and what is kept for how long."""
    client = sync_client(request)
    return JSONResponse(await asyncio.to_thread(report, client, request.app.state.settings))
