"""Event structs of the non-village seeds, on the common envelope (``anon_village_id`` is the actor).

Payload structs are allow-lists: unknown fields are dropped on decode. String fields take
identifier-like tokens only; a field that is free text by nature (a search query) is declared in
the profile's ``hashed_fields`` and stored only as a keyed HMAC.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from schemas.catalog import Event, SessionEnd, SessionStart, Token

PagePath = Annotated[str, msgspec.Meta(pattern=r"^/[A-Za-z0-9_\-./]{0,127}$")]
Query = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Count = Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
Money = Annotated[float, msgspec.Meta(ge=0, le=1_000_000)]


class _P(msgspec.Struct, forbid_unknown_fields=False, kw_only=True):
    pass


class SearchPayload(_P):
    query: Query
    results: Count | None = None
    service_id: Token | None = None


class ServerInstalledPayload(_P):
    server_id: Token


class PagePayload(_P):
    page: PagePath


class ButtonPayload(_P):
    button_id: Token


class ErrorPayload(_P):
    code: Token


class BookingPayload(_P):
    booking_id: Token
    service_id: Token | None = None


class ServicePayload(_P):
    service_id: Token


class FeaturePayload(_P):
    feature: Token


class ContentPayload(_P):
    content_type: Token


class AiRequestPayload(_P):
    model: Token
    tokens: Count = 0
    cost_usd: Money = 0.0


def _event(name: str, payload: type[_P]) -> type[Event]:
    """An event struct named ``name`` carrying ``payload`` (a required payload)."""
    return msgspec.defstruct(
        "".join(part.title() for part in name.split("_")),
        [("event_name", Literal[name]), ("event_version", Literal[1]), ("payload", payload)],
        bases=(Event,),
        kw_only=True,
        forbid_unknown_fields=False,
    )


def catalog(*events: tuple[str, type[_P]], sessions: bool = False) -> dict[tuple[str, int], type[Event]]:
    out: dict[tuple[str, int], type[Event]] = {(name, 1): _event(name, p) for name, p in events}
    if sessions:  # the village catalog's own session events, shared by every profile
        out[("session_start", 1)] = SessionStart
        out[("session_end", 1)] = SessionEnd
    return out
