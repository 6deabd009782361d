"""Event structs of the non-village seeds, on the common envelope (``anon_village_id`` is the actor).

Payload structs are allow-lists: unknown fields are dropped on decode. String fields take
identifier-like tokens only; a field that is free text by nature (a search query) is declared in
the profile's ``hashed_fields`` and stored only as a keyed HMAC.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from schemas.catalog import Event, SessionEnd, SessionStart, Token

PagePath = Annotated[str, msgspec.Meta(pattern=r"^/[A-Za-z0-9_\-./]{0,127}(?!\n)$")]
PageName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_\-./]{1,128}(?!\n)$")]  # a path or a screen name
Query = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Count = Annotated[int, msgspec.Meta(ge=0, le=10_000_000)]
Money = Annotated[float, msgspec.Meta(ge=0, le=1_000_000)]
Latitude = Annotated[float, msgspec.Meta(ge=-90, le=90)]
Longitude = Annotated[float, msgspec.Meta(ge=-180, le=180)]
Score = Annotated[float, msgspec.Meta(ge=0, le=1_000_000)]


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


# -- seed 001: a web app's events; the types the seed gives no example for take an empty payload
class WebPagePayload(_P):
    page: PagePath
    referrer: PagePath | None = None
    session_id: Token | None = None


class FormPayload(_P):
    form_id: Token | None = None


class VideoPayload(_P):
    video_id: Token | None = None
    position_seconds: Count | None = None


class CoursePayload(_P):
    course_id: Token
    completion_time: Count | None = None
    score: Score | None = None


class SearchQueryPayload(_P):
    query: Query | None = None
    results: Count | None = None


class ErrorOccurredPayload(_P):
    code: Token | None = None


# -- seed 002: a service marketplace's events
class ScreenPayload(_P):
    page: PageName  # the seed's own example is "dashboard": a screen name, no leading slash
    section: Token | None = None
    duration_seconds: Count | None = None


class BookingStatusPayload(_P):
    booking_id: Token
    status: Token


class JobApplyPayload(_P):
    job_id: Token
    worker_id: Token | None = None


class EmergencyPayload(_P):
    latitude: Latitude
    longitude: Longitude


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
